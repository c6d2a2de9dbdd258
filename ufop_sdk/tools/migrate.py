"""Rewriting a qiniu-ufop ``app.py`` as a ufop-sdk ``processors.py``.

Each ``@ufop.task(route=...)`` function stays as it is, and gains a Processor
class that calls it and answers its value as qiniu-ufop did (``older_response``:
its JSON, ``text/plain; charset=utf-8`` for a str), with its route rewritten for
``re.fullmatch`` on the params without the leading slash. What cannot be rewritten exactly is kept
working as it was and marked ``# TODO(migrate)``.
"""

import ast
import re

TODO = "# TODO(migrate):"


def convert_route(pattern):
    """The fullmatch-on-params equivalent of qiniu-ufop's route, or None.

    qiniu-ufop searched the cmd after the ufop name: ``""`` for the bare
    name, ``"/<params>"`` otherwise. Equivalent for every params a cmd can
    carry (cmds with control characters, such as a newline, which ``$``
    treats specially, are refused with 400), with one difference: a class
    route sees ``"name/"`` as the bare name, where qiniu-ufop searched ``"/"``.
    """
    if pattern in ("", ".*", "^"):
        return ".*"
    if pattern in ("^$", "^\\Z", "\\A$", "\\A\\Z"):
        return ""  # the bare name only
    if pattern in ("^/", "^/.*"):
        return ".+"  # any params, but not the bare name
    if _has_top_level_alternation(pattern) or "(?<" in pattern:
        return None  # anchors apply per branch, or a lookbehind may need the slash
    body = _after_slash(pattern)
    if body is None:
        return None  # unanchored: it could match anywhere in the cmd
    body = _anchored_at_the_end(body)
    if "^" in body.replace("[^", "").replace("\\^", "") or _unescaped_dollar(body):
        return None
    try:
        matches_the_bare_name = re.fullmatch(body, "") is not None
    except re.error:
        return None
    if matches_the_bare_name and not _optionally_slashed(pattern):
        # qiniu-ufop's slash was not there to match in the bare name's ""
        body = "(?=.)" + body
    return body


def _after_slash(pattern):
    """The pattern after its leading ``^/``, or ``(?:BODY)?...`` for ``^(?:/BODY)?...``; None if neither."""
    for start in ("^", "\\A"):
        if pattern.startswith(start + "/"):
            return pattern[len(start) + 1:]
        if pattern.startswith(start + "(?:/"):
            group_end = _group_end(pattern, len(start))
            inner, tail = pattern[len(start) + 4:group_end], pattern[group_end + 1:]
            if group_end < 0 or _has_top_level_alternation(inner) or tail not in ("?", "?$", "?\\Z"):
                return None  # what follows the group could match the slash itself
            return "(?:" + inner + ")" + tail
    return None


def _optionally_slashed(pattern):
    return pattern.startswith(("^(?:/", "\\A(?:/"))


def _anchored_at_the_end(body):
    if body.endswith("\\Z"):
        return body[:-2]
    if body.endswith("$") and not _escaped(body, len(body) - 1):
        return body[:-1]
    return body + ".*"  # search() ignored whatever followed


def _group_end(pattern, start):
    """The index of the ``)`` closing the group opened at `start`, or -1."""
    for index, char, depth in _structure(pattern, start):
        if char == ")" and depth == 0:
            return index
    return -1


def _structure(pattern, start=0):
    """(index, char, depth after it) for each character of `pattern` from `start` that is
    regex structure: not escaped, not inside a character class."""
    depth, in_class, index = 0, False, start
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # a "]" first in a class (after any "^") is a literal, not the class's end
            opening = pattern[index + 1:index + 3]
            index += 2 if opening == "^]" else 1 if opening[:1] == "]" else 0
        else:
            depth += {"(": 1, ")": -1}.get(char, 0)
            yield index, char, depth
        index += 1


def migrate(source):
    """The processors.py for qiniu-ufop app source `source`: (text, [notes on what needs a look])."""
    tree = ast.parse(source)
    lines = source.splitlines()
    apps = _app_names(tree)
    tasks, notes = _tasks(tree, apps)
    drop = set()
    for node in tree.body:
        if _is_qiniu_import(node) or _is_app_assignment(node, apps):
            drop.update(range(node.lineno - 1, node.end_lineno))
    for task in tasks:
        drop.update(range(task["decorator"].lineno - 1, task["decorator"].end_lineno))
    header_at = _header_line(tree)
    leftovers = sorted({node.lineno for node in ast.walk(tree)
                        if isinstance(node, ast.Name) and node.id in apps and not _in_decorator(node, tasks)
                        and not _in_assignment(node, tree, apps)})
    if leftovers:
        notes.append(f"lines {leftovers} still use the qiniu-ufop app ({', '.join(sorted(apps))})")
    header = _header(tree, tasks, notes)
    kept = []
    for number, line in enumerate(lines):
        if number == header_at:
            kept += header
        if number not in drop:
            kept.append(line)
    if header_at >= len(lines):
        kept += header
    classes = [_processor_class(task, _class_name(task["name"], tree)) for task in tasks]
    body = re.sub(r"\n{4,}", "\n\n\n", "\n".join(kept)).rstrip()
    return body + "\n\n" + "\n".join(classes), notes


def _header_line(tree):
    """Where the new imports go: at the qiniu_ufop import, else after the docstring and __future__."""
    for node in tree.body:
        if _is_qiniu_import(node):
            return node.lineno - 1
    position = 0
    for node in tree.body:
        is_docstring = isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        if is_docstring or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            position = node.end_lineno
        else:
            break
    return position


def _header(tree, tasks, notes):
    imported = {alias.asname or alias.name for node in tree.body if _is_qiniu_import(node)
                for alias in node.names}
    has_io = any(isinstance(node, ast.Import) and any(alias.name == "io" and not alias.asname
                                                       for alias in node.names) for node in tree.body)
    needs_io = any(task["wraps_buffer"] for task in tasks) and not has_io
    lines = ["import io", ""] if needs_io else []
    if "HTTPHeaders" in imported:
        lines.append("from tornado.httputil import HTTPHeaders")
    lines.append("from ufop_sdk import Processor")
    compat = sorted({"Response"} & imported | {"older_response"} | ({"search_route"} if any(
        task["route"] is None and task["original"] is not None for task in tasks) else set())
        | ({"Task"} if "Task" in imported or any(task["bind"] for task in tasks) else set()))
    if compat:
        lines.append(f"from ufop_sdk.compat import {', '.join(compat)}")
    lines += [f"{TODO} {note}" for note in notes]
    return lines


def _tasks(tree, apps):
    tasks, notes = [], []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "task" and isinstance(decorator.func.value, ast.Name)
                    and decorator.func.value.id in apps):
                continue
            route = next((keyword.value for keyword in decorator.keywords if keyword.arg == "route"), None)
            if not (isinstance(route, ast.Constant) and isinstance(route.value, str)):
                notes.append(f"{node.name}(): its route is not a string literal; give its class a route")
                original = None
            else:
                original = route.value
            limit = next((keyword.value for keyword in decorator.keywords
                          if keyword.arg in ("soft_time_limit", "time_limit")), None)
            timeout = limit.value if isinstance(limit, ast.Constant) else None
            if limit is not None and not isinstance(timeout, (int, float)):
                notes.append(f"{node.name}(): its time limit is not a number; give its class a timeout")
                timeout = None
            tasks.append({"name": node.name, "decorator": decorator, "original": original,
                          "route": convert_route(original) if original is not None else None,
                          "doc": ast.get_docstring(node), "wraps_buffer": _uses_getvalue(node),
                          "timeout": timeout, "bind": _is_bound(decorator)})
    return tasks, notes


def _processor_class(task, class_name):
    lines = ["", f"class {class_name}(Processor):"]
    if task["doc"]:
        lines.append(f'    """{task["doc"].splitlines()[0]}"""')
        lines.append("")
    if task["route"] is not None:
        lines.append(f"    route = {_literal(task['route'])}")
    elif task["original"] is not None:
        lines.append(f"    {TODO} qiniu-ufop matched this with re.search on \"/<params>\"; rewrite it for")
        lines.append("    # re.fullmatch on \"<params>\" (no leading slash) and drop search_route().")
        lines.append(f"    route = search_route({_literal(task['original'])})")
    else:
        lines.append(f"    route = None  {TODO} the route was not a string literal")
    if task["timeout"] is not None:
        lines.append(f"    timeout = {task['timeout']!r}")
    buffer = "io.BytesIO(req.buffer.read())" if task["wraps_buffer"] else "req.buffer"
    call = f"{task['name']}({buffer}, dict(req.args), req.declared_content_type or req.content_type)"
    process = ["", "    def process(self, req):"]
    if task["bind"]:  # the Task that ufop_sdk.compat passes a bound task, made the same way
        process.append(f'        task = Task(__name__ + ".{task["name"]}", {_literal(task["original"])}, '
                       f"req.request_id)")
        call = call.replace("(", "(task, ", 1)
    lines += [*process, "        return older_response(", f'            {call}, "{class_name}")', ""]
    return "\n".join(lines)


def _app_names(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            function = node.value.func
            called = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
            if called == "QiniuUFOP":
                names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def _is_qiniu_import(node):
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "qiniu_ufop"


def _is_app_assignment(node, apps):
    return isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id in apps for target in node.targets)


def _in_decorator(name, tasks):
    return any(task["decorator"].lineno <= name.lineno <= task["decorator"].end_lineno for task in tasks)


def _in_assignment(name, tree, apps):
    return any(_is_app_assignment(node, apps) and node.lineno <= name.lineno <= node.end_lineno
               for node in tree.body)


def _is_bound(decorator):
    return any(keyword.arg == "bind" and isinstance(keyword.value, ast.Constant)
               and keyword.value.value is True for keyword in decorator.keywords)


def _uses_getvalue(function):
    return any(isinstance(node, ast.Attribute) and node.attr == "getvalue" for node in ast.walk(function))


def _class_name(function_name, tree):
    name = "".join(part.capitalize() for part in function_name.split("_")) or "Processor"
    taken = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    return name if name not in taken else name + "Processor"


def _literal(pattern):
    if '"' not in pattern and not pattern.endswith("\\") and "\n" not in pattern:
        return f'r"{pattern}"'
    return repr(pattern)


def _escaped(text, index):
    backslashes = len(text[:index]) - len(text[:index].rstrip("\\"))
    return backslashes % 2 == 1


def _unescaped_dollar(text):
    return any(char == "$" and not _escaped(text, index) for index, char in enumerate(text))


def _has_top_level_alternation(pattern):
    return any(char == "|" and depth == 0 for _, char, depth in _structure(pattern))


