"""``ufop-sdk dev --bucket``'s persistent processing, driven with the official Qiniu SDK (``qiniu``).

Every test points the SDK at a real ``ufop-sdk dev`` subprocess serving the
tests/projects/pfop processors (``pfoptest/upper``, ``reverse``, ``fail``,
``sleep/<s>``, ``timed/<s>``, ``platform``, ``big/<MiB>``, ``overtime``,
``crash``) on bucket folders, and uses it
as a Qiniu user does: ``PersistentFop(...).execute`` and ``.get_status``,
``op_save`` and ``entry`` for saveas, ``Auth.token`` to sign the
synchronous form. Inputs are put into the bucket folders directly, except
in the one flow test that uploads with ``put_data``.
"""

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import qiniu
import requests
from qiniu.auth import RequestsAuth
from support import PROJECTS, Origin, Server

PFOP = PROJECTS / "pfop"
ACCESS_KEY, SECRET_KEY = "dev-access-key", "dev-secret-key"
CREDENTIALS = {"QINIU_ACCESS_KEY": ACCESS_KEY, "QINIU_SECRET_KEY": SECRET_KEY}
NO_CREDENTIALS = {"QINIU_ACCESS_KEY": "", "QINIU_SECRET_KEY": ""}  # set empty: the host's own never leak in
AUTH = qiniu.Auth(ACCESS_KEY, SECRET_KEY)
WRONG_AUTHS = {"another-secret-key": qiniu.Auth(ACCESS_KEY, "another-secret"),
               "another-access-key": qiniu.Auth("another-access-key", SECRET_KEY)}
FAILURE = "this fop always fails"  # what pfoptest/fail raises
INPUT = b"hello pfop\n"

DONE, WAITING, RUNNING, FAILED, CALLBACK_FAILED = 0, 1, 2, 3, 4
JOB_FIELDS = {"id", "pipeline", "code", "desc", "reqid", "inputBucket", "inputKey", "items"}
ITEM_FIELDS = {"cmd", "code", "desc", "hash", "key", "returnOld"}  # and "error" when it failed
# A job's fops take well under a second each here; the bound is wide because this machine is slow and shared.
WAIT_SECONDS = 60.0


# -- the servers and the SDK pointed at them -------------------------------------------------------------

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The folders of buckets ``photos`` and ``other``, and ``outside`` next to them.

    ``photos`` holds ``hello.txt`` and ``link-out``, a symlink to ``outside``:
    a saveas that escapes shows up as a file in ``outside`` or beside the buckets,
    where ``beside.txt`` lies.
    """
    root = tmp_path_factory.mktemp("pfop-buckets")
    for name in ("photos", "other", "outside"):
        (root / name).mkdir()
    (root / "photos" / "hello.txt").write_bytes(INPUT)
    (root / "beside.txt").write_bytes(b"a file beside the buckets, never to be processed\n")
    (root / "photos" / "link-out").symlink_to(root / "outside", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(folders):
    with Server(PFOP, "--bucket", f"photos={folders / 'photos'}", "--bucket", f"other={folders / 'other'}",
                command="dev", env=CREDENTIALS) as server:
        yield server


@pytest.fixture
def point_sdk_at():
    """``point_sdk_at(server)`` sets the SDK's API host (a module global) to `server`, until the test ends."""
    before = qiniu.config.get_default("default_api_host")
    yield lambda server: qiniu.config.set_default(default_api_host=server.url)
    qiniu.config.set_default(default_api_host=before)


@pytest.fixture
def photos(server, folders, point_sdk_at):
    """A PersistentFop on the shared server's bucket ``photos``, signed with the right credentials."""
    point_sdk_at(server)
    return qiniu.PersistentFop(AUTH, "photos")


@pytest.fixture
def notify():
    """A local receiver for notifyURL: ``notify.url("/done")`` answers 200 unless ``notify.receive`` says."""
    with Origin() as origin:
        origin.receive("/done")
        yield origin


@pytest.fixture
def bucket(tmp_path):
    """A bucket folder of the test's own, holding hello.txt, for a dev server of the test's own."""
    folder = tmp_path / "bucket"
    folder.mkdir()
    (folder / "hello.txt").write_bytes(INPUT)
    return folder


def dev_on(bucket_folder, env=CREDENTIALS, project=PFOP, workers=2):
    """A ``dev`` Server of `project` serving `bucket_folder` as bucket ``photos``."""
    return Server(project, "--bucket", f"photos={bucket_folder}", command="dev", env=env, workers=workers)


def project_with_env(tmp_path, lines):
    """A copy of the pfop project whose ``.env`` has `lines` too."""
    project = shutil.copytree(PFOP, tmp_path / "project")
    with open(project / ".env", "a", encoding="utf-8") as env:
        env.write("".join(f"{line}\n" for line in lines))
    return project


# -- asking as the SDK does ------------------------------------------------------------------------------

def submitted(pfop, key, fops, **options):
    """The persistentId of a job the server accepted."""
    ret, info = pfop.execute(key, fops, **options)
    assert info.status_code == 200 and ret is not None, info
    return ret["persistentId"]


def status_when(pfop, persistent_id, wanted, within=WAIT_SECONDS):
    """The first status of the job for which `wanted(status)` holds, polling every 100 ms."""
    deadline = time.monotonic() + within
    while True:
        ret, info = pfop.get_status(persistent_id)
        assert info.status_code == 200 and ret is not None, info
        if wanted(ret):
            return ret
        if time.monotonic() > deadline:
            raise AssertionError(f"no wanted status of {persistent_id} within {within}s; the last: {ret}")
        time.sleep(0.1)


def finished(pfop, persistent_id, within=WAIT_SECONDS):
    """The job's status once it is no longer waiting or running."""
    return status_when(pfop, persistent_id, lambda status: status["code"] not in (WAITING, RUNNING), within)


def run(pfop, key, fops, **options):
    """Submit a job and return its final status."""
    return finished(pfop, submitted(pfop, key, fops, **options))


def codes_of(status):
    """The code of each item of a job's status."""
    return [item["code"] for item in status["items"]]


def refused(info, status):
    """Check that an SDK call was answered `status` with a JSON error and an X-Reqid, as Qiniu's are."""
    assert info.status_code == status, info
    assert info.req_id, "every answer carries an X-Reqid header"
    assert isinstance(info.json()["error"], str), info.text_body


def wait_for(condition, what, within=WAIT_SECONDS):
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def check_saved(item, folder, key, contents):
    """Check that `item` succeeded and saved `contents` at `key` in bucket `folder`, its etag as hash."""
    assert (item["code"], item["key"], item["returnOld"]) == (DONE, key, 0), item
    assert "error" not in item, item
    assert (folder / key).read_bytes() == contents
    assert item["hash"] == qiniu.etag(str(folder / key))


# -- the flow --------------------------------------------------------------------------------------------

def test_a_job_of_two_saveas_fops_saves_both_outputs_and_notifies_its_final_status(server, folders, notify,
                                                                                  point_sdk_at):
    point_sdk_at(server)
    pfop = qiniu.PersistentFop(AUTH, "photos", notify_url=notify.url("/done"))
    fops = [qiniu.op_save("pfoptest/upper", "photos", "flow/upper.txt"),
            qiniu.op_save("pfoptest/reverse", "photos", "flow/reversed.txt")]
    ret, info = pfop.execute("hello.txt", fops)
    persistent_id = ret["persistentId"]
    status = finished(pfop, persistent_id)
    assert set(status) == JOB_FIELDS, status
    assert (status["id"], status["code"], status["inputBucket"], status["inputKey"], status["reqid"]) == (
        persistent_id, DONE, "photos", "hello.txt", info.req_id)
    assert [item["cmd"] for item in status["items"]] == fops
    assert all(set(item) == ITEM_FIELDS for item in status["items"]), status["items"]
    check_saved(status["items"][0], folders / "photos", "flow/upper.txt", INPUT.upper())
    check_saved(status["items"][1], folders / "photos", "flow/reversed.txt", INPUT[::-1])
    wait_for(lambda: notify.posted, "the notify callback")
    time.sleep(1)  # a second callback would come now, if one were (wrongly) sent
    [callback] = notify.posted
    assert callback.headers["Content-Type"].startswith("application/json")
    assert json.loads(callback.body) == status


def test_upload_with_put_data_then_pfop_then_status_finds_the_output_in_the_bucket(server, folders,
                                                                                   point_sdk_at):
    # the one test that starts with the SDK's upload (dev's form upload at POST /), not a file put there
    point_sdk_at(server)
    token = AUTH.upload_token("photos", "uploaded/words.txt", 3600)
    ret, info = qiniu.put_data(token, "uploaded/words.txt", b"uploaded words\n",
                               regions=[qiniu.Region(up_host=server.url)])
    assert info.status_code == 200 and ret is not None, info
    uploaded = folders / "photos" / "uploaded/words.txt"
    assert ret == {"hash": qiniu.etag(str(uploaded)), "key": "uploaded/words.txt"}
    pfop = qiniu.PersistentFop(AUTH, "photos")
    fops = [qiniu.op_save("pfoptest/upper", "photos", "uploaded/upper.txt")]
    status = run(pfop, "uploaded/words.txt", fops)
    assert status["code"] == DONE, status
    check_saved(status["items"][0], folders / "photos", "uploaded/upper.txt", b"UPLOADED WORDS\n")


def test_a_failing_fop_is_reported_on_its_item_while_the_other_succeeds(photos, folders):
    fops = [qiniu.op_save("pfoptest/upper", "photos", "partial/upper.txt"), "pfoptest/fail"]
    status = run(photos, "hello.txt", fops)
    assert status["code"] == FAILED, status
    succeeded, failed = status["items"]
    check_saved(succeeded, folders / "photos", "partial/upper.txt", INPUT.upper())
    assert failed["code"] == FAILED and FAILURE in failed["error"], failed


# fops the project cannot run, and what each item's error says
UNRUNNABLE = [
    pytest.param("otherufop/upper", "another ufop", id="another-ufop"),
    pytest.param("pfoptest/nothing", "no processor", id="no-route"),
    pytest.param("pfoptest/overtime", "timeout", id="over-its-timeout"),
    pytest.param("pfoptest/crash", "Crash", id="a-bug", marks=pytest.mark.expect_traceback),  # logged
]


@pytest.mark.parametrize("fop, error", UNRUNNABLE)
def test_a_fop_the_project_cannot_run_fails_its_item_with_the_reason(photos, fop, error):
    began = time.monotonic()
    status = run(photos, "hello.txt", [fop, "pfoptest/upper"])
    assert codes_of(status) == [FAILED, DONE] and status["code"] == FAILED, status
    assert error in status["items"][0]["error"], status
    assert time.monotonic() - began < 9, "a fop over its timeout is stopped at it"


def test_a_failed_job_notifies_its_status_too(server, notify, point_sdk_at):
    point_sdk_at(server)
    pfop = qiniu.PersistentFop(AUTH, "photos", notify_url=notify.url("/done"))
    status = run(pfop, "hello.txt", ["pfoptest/fail"])
    assert status["code"] == FAILED, status
    wait_for(lambda: notify.posted, "the notify callback")
    assert json.loads(notify.posted[0].body) == status


def test_a_job_is_waiting_or_running_until_its_fop_ends(photos):
    persistent_id = submitted(photos, "hello.txt", ["pfoptest/sleep/3"])
    ret, _ = photos.get_status(persistent_id)
    assert ret["code"] in (WAITING, RUNNING) and ret["items"][0]["code"] in (WAITING, RUNNING), ret
    assert finished(photos, persistent_id)["code"] == DONE


def test_the_fops_of_a_job_run_side_by_side(photos, folders):
    fops = [qiniu.op_save("pfoptest/timed/3", "photos", f"timed/{n}.json") for n in (1, 2)]
    assert run(photos, "hello.txt", fops)["code"] == DONE
    first, second = (json.loads((folders / "photos" / f"timed/{n}.json").read_bytes()) for n in (1, 2))
    assert first["started"] < second["ended"] and second["started"] < first["ended"], (first, second)


def test_at_most_3_fops_run_at_once_and_the_others_wait(bucket, point_sdk_at):
    fops = [qiniu.op_save("pfoptest/timed/2", "photos", f"timed/{n}.json") for n in range(5)]
    with dev_on(bucket, workers=5) as server:
        point_sdk_at(server)
        pfop = qiniu.PersistentFop(AUTH, "photos")
        persistent_id = submitted(pfop, "hello.txt", fops)
        busiest = status_when(pfop, persistent_id, lambda status: codes_of(status).count(RUNNING) >= 3)
        assert finished(pfop, persistent_id)["code"] == DONE
    assert sorted(codes_of(busiest)) == [WAITING] * 2 + [RUNNING] * 3, busiest
    spans = [json.loads((bucket / f"timed/{n}.json").read_bytes()) for n in range(5)]
    most = max(sum(span["started"] <= other["started"] < span["ended"] for span in spans) for other in spans)
    assert 2 <= most <= 3, spans


def test_a_fop_that_is_a_pipeline_saves_its_last_steps_output(photos, folders):
    fops = [qiniu.op_save("pfoptest/upper|pfoptest/reverse", "photos", "piped/out.txt")]
    status = run(photos, "hello.txt", fops)
    assert status["code"] == DONE, status
    check_saved(status["items"][0], folders / "photos", "piped/out.txt", INPUT.upper()[::-1])


def test_a_job_on_a_key_of_unicode_and_url_characters_saves_to_such_a_key(photos, folders):
    key, target = "文件 夹/ünï+côdé 100%?#&=.txt", "输出/大 写+%?#&=.txt"
    (folders / "photos" / "文件 夹").mkdir()
    (folders / "photos" / key).write_bytes("ünï côdé\n".encode())
    status = run(photos, key, [qiniu.op_save("pfoptest/upper", "photos", target)])
    assert (status["code"], status["inputKey"]) == (DONE, key), status
    check_saved(status["items"][0], folders / "photos", target, "ünï côdé\n".encode().upper())


def test_a_job_on_a_key_with_leading_and_trailing_spaces_reads_that_key(photos, folders):
    (folders / "photos" / " padded.txt ").write_bytes(b"the padded one\n")
    (folders / "photos" / "padded.txt").write_bytes(b"the other one\n")
    status = run(photos, " padded.txt ", [qiniu.op_save("pfoptest/upper", "photos", " padded out ")])
    assert (status["code"], status["inputKey"]) == (DONE, " padded.txt "), status
    check_saved(status["items"][0], folders / "photos", " padded out ", b"THE PADDED ONE\n")


# A processor with prefetch = False reads its source from the URL dev gives it, NAME.localhost:<port>
# for a bucket other than the first, which glibc's resolver does not resolve: the fetchers do (RFC 6761).
STREAMING = [
    pytest.param("pfoptest/lines", "photos", id="iterator"),
    pytest.param("pfoptest/lines", "other", id="iterator-second-bucket"),
    pytest.param("pfoptest/spooled", "photos", id="open-file"),
    pytest.param("pfoptest/spooled", "other", id="open-file-second-bucket"),
    pytest.param("pfoptest/forward", "photos", id="streamed-input"),
    pytest.param("pfoptest/forward", "other", id="streamed-input-second-bucket"),
]


@pytest.mark.parametrize("fop, bucket_name", STREAMING)
def test_an_output_streamed_or_from_a_file_or_of_a_streamed_input_is_saved_whole(server, folders,
                                                                                  point_sdk_at, fop,
                                                                                  bucket_name):
    point_sdk_at(server)
    (folders / bucket_name / "lines.txt").write_bytes(b"first line\nsecond line\n" * 1000)
    target = f"streamed/{fop.replace('/', '-')}.txt"
    fops = [qiniu.op_save(fop, bucket_name, target)]
    status = run(qiniu.PersistentFop(AUTH, bucket_name), "lines.txt", fops)
    assert status["code"] == DONE, status["items"]
    check_saved(status["items"][0], folders / bucket_name, target, b"FIRST LINE\nSECOND LINE\n" * 1000)


def test_an_output_of_several_4_mib_blocks_is_saved_whole_with_the_sdks_etag(photos, folders):
    status = run(photos, "hello.txt", [qiniu.op_save("pfoptest/big/9", "photos", "big/nine.bin")])
    assert status["code"] == DONE, status
    check_saved(status["items"][0], folders / "photos", "big/nine.bin", bytes(range(256)) * (9 << 12))


def test_ten_jobs_submitted_at_once_all_finish_done(photos):
    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(lambda n: submitted(photos, "hello.txt", ["pfoptest/upper", "pfoptest/reverse"]),
                            range(10)))
    assert len(set(ids)) == 10
    assert [finished(photos, persistent_id)["code"] for persistent_id in ids] == [DONE] * 10


def test_a_jobs_fop_is_told_the_bucket_the_key_and_the_asynchronous_mode(photos, folders):
    status = run(photos, "hello.txt", [qiniu.op_save("pfoptest/platform", "photos", "told/platform.json")])
    assert status["code"] == DONE, status
    told = json.loads((folders / "photos" / "told/platform.json").read_bytes())
    assert (told["bucket"], told["key"], told["is_async"]) == ("photos", "hello.txt", True), told


def test_the_pipeline_and_type_given_are_accepted_and_the_pipeline_reported(server, point_sdk_at):
    point_sdk_at(server)
    pfop = qiniu.PersistentFop(AUTH, "photos", pipeline="my-pipeline")
    status = run(pfop, "hello.txt", ["pfoptest/upper"], persistent_type=1)
    assert status["code"] == DONE and "my-pipeline" in status["pipeline"], status


def test_a_job_is_kept_in_the_bucket_state_folder(photos, folders):
    persistent_id = submitted(photos, "hello.txt", ["pfoptest/upper"])
    finished(photos, persistent_id)
    kept = folders / "photos" / ".ufop-dev" / "jobs" / f"{persistent_id}.json"
    assert kept.is_file(), sorted(p.name for p in kept.parent.glob("*"))


# -- saveas ----------------------------------------------------------------------------------------------

def test_a_fop_without_saveas_stores_its_output_under_the_generated_key_it_reports(photos, folders):
    status = run(photos, "hello.txt", ["pfoptest/reverse"])
    assert status["code"] == DONE, status
    [item] = status["items"]
    assert item["key"] and item["key"] != "hello.txt", item
    check_saved(item, folders / "photos", item["key"], INPUT[::-1])


def test_an_existing_saveas_target_is_kept_with_return_old_unless_forced(photos, folders):
    bucket = folders / "photos"
    (bucket / "force.txt").write_bytes(b"first\n")
    fops = [qiniu.op_save("pfoptest/upper", "photos", "force/out.txt")]
    check_saved(run(photos, "force.txt", fops)["items"][0], bucket, "force/out.txt", b"FIRST\n")
    (bucket / "force.txt").write_bytes(b"second\n")
    [kept] = run(photos, "force.txt", fops)["items"]
    assert (kept["code"], kept["returnOld"], kept["key"]) == (DONE, 1, "force/out.txt"), kept
    assert (bucket / "force/out.txt").read_bytes() == b"FIRST\n"
    assert kept["hash"] == qiniu.etag(str(bucket / "force/out.txt"))
    [forced] = run(photos, "force.txt", fops, force=1)["items"]
    check_saved(forced, bucket, "force/out.txt", b"SECOND\n")


def test_a_saveas_into_the_second_bucket_writes_into_its_folder(photos, folders):
    status = run(photos, "hello.txt", [qiniu.op_save("pfoptest/upper", "other", "from-photos/upper.txt")])
    assert status["code"] == DONE, status
    check_saved(status["items"][0], folders / "other", "from-photos/upper.txt", INPUT.upper())
    assert not (folders / "photos" / "from-photos").exists()


# saveas targets dev must refuse: out of the bucket folder, into dev's own state, into no bucket
ESCAPES = {"parent": ("photos", "../escaped.txt"),
           "dotdot-inside": ("photos", "deep/../../escaped.txt"),
           "symlink-out": ("photos", "link-out/escaped.txt"),
           "state-folder": ("photos", ".ufop-dev/escaped.txt"),
           "unknown-bucket": ("no-such-bucket", "escaped.txt")}


@pytest.mark.parametrize("target", ESCAPES.values(), ids=ESCAPES)
def test_a_saveas_out_of_the_buckets_fails_its_item_and_writes_nothing(photos, folders, target):
    status = run(photos, "hello.txt", [qiniu.op_save("pfoptest/upper", *target)])
    assert status["code"] == FAILED, status
    [item] = status["items"]
    assert item["code"] == FAILED and item["error"], item
    assert not [path for path in folders.rglob("escaped.txt")], "a saveas escaped"


def test_a_saveas_key_with_a_dotdot_part_fails_even_where_it_names_an_existing_file(photos, folders):
    # deep/../hello.txt resolves to hello.txt: it must not be taken for an existing target (returnOld)
    status = run(photos, "hello.txt", [qiniu.op_save("pfoptest/upper", "photos", "deep/../hello.txt")])
    [item] = status["items"]
    assert (status["code"], item["code"]) == (FAILED, FAILED), status
    assert (folders / "photos" / "hello.txt").read_bytes() == INPUT


# -- signatures and errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", WRONG_AUTHS.values(), ids=WRONG_AUTHS)
def test_a_pfop_signed_with_other_credentials_is_401(server, point_sdk_at, auth):
    point_sdk_at(server)
    ret, info = qiniu.PersistentFop(auth, "photos").execute("hello.txt", ["pfoptest/upper"])
    assert ret is None
    refused(info, 401)


@pytest.mark.parametrize("auth", WRONG_AUTHS.values(), ids=WRONG_AUTHS)
def test_a_status_signed_with_other_credentials_is_401(photos, auth):
    persistent_id = submitted(photos, "hello.txt", ["pfoptest/upper"])
    ret, info = qiniu.PersistentFop(auth, "photos").get_status(persistent_id)
    assert ret is None
    refused(info, 401)


@pytest.mark.parametrize("method, path", [("POST", "/pfop"), ("GET", "/status/get/prefop?id=x")])
def test_an_unsigned_pfop_or_status_is_401(server, method, path):
    form = {"bucket": "photos", "key": "hello.txt", "fops": "pfoptest/upper"} if method == "POST" else None
    response = requests.request(method, server.url + path, data=form, timeout=30)
    assert response.status_code == 401 and response.headers["X-Reqid"], response.text
    assert response.json()["error"]


@pytest.mark.parametrize("missing", ["bucket", "key", "fops"])
def test_a_pfop_missing_a_field_is_400(server, missing):
    form = {"bucket": "photos", "key": "hello.txt", "fops": "pfoptest/upper"}
    del form[missing]
    response = requests.post(server.url + "/pfop", data=form, auth=RequestsAuth(AUTH), timeout=30)
    assert response.status_code == 400 and response.headers["X-Reqid"], response.text
    assert missing in response.json()["error"]


@pytest.mark.parametrize("fops", [[";"], ["", ""]], ids=["semicolon", "empty-fops"])
def test_a_pfop_whose_fops_are_all_empty_is_400(photos, fops):
    _, info = photos.execute("hello.txt", fops)
    refused(info, 400)


def test_a_pfop_on_a_key_outside_the_bucket_is_refused(photos):
    ret, info = photos.execute("../beside.txt", ["pfoptest/upper"])
    assert ret is None and info.status_code >= 400, info
    assert info.req_id and info.json()["error"], info


def test_a_pfop_with_a_notify_url_that_is_not_http_is_400(server, point_sdk_at):
    point_sdk_at(server)
    pfop = qiniu.PersistentFop(AUTH, "photos", notify_url="ftp://127.0.0.1/done")
    _, info = pfop.execute("hello.txt", ["pfoptest/upper"])
    refused(info, 400)


def test_a_pfop_of_a_workflow_template_is_400(photos):
    _, info = photos.execute("hello.txt", workflow_template_id="a-template")
    refused(info, 400)


def test_a_pfop_at_pfop_with_a_trailing_slash_is_accepted(server):
    form = {"bucket": "photos", "key": "hello.txt", "fops": "pfoptest/upper"}
    response = requests.post(server.url + "/pfop/", data=form, auth=RequestsAuth(AUTH), timeout=30)
    assert response.status_code == 200 and response.headers["X-Reqid"], response.text
    assert response.json()["persistentId"]


def test_a_pfop_on_an_unknown_bucket_is_631(server, point_sdk_at):
    point_sdk_at(server)
    _, info = qiniu.PersistentFop(AUTH, "no-such-bucket").execute("hello.txt", ["pfoptest/upper"])
    refused(info, 631)


def test_a_pfop_on_a_missing_key_is_612(photos):
    _, info = photos.execute("no-such-key.txt", ["pfoptest/upper"])
    refused(info, 612)


def test_the_status_of_an_unknown_id_is_612(photos):
    _, info = photos.get_status("no-such-job")
    refused(info, 612)


def test_without_credentials_any_signature_is_accepted_and_dev_says_so_once(bucket, point_sdk_at):
    with dev_on(bucket, env=NO_CREDENTIALS) as server:
        point_sdk_at(server)
        for auth in WRONG_AUTHS.values():
            pfop = qiniu.PersistentFop(auth, "photos")
            fops = [qiniu.op_save("pfoptest/upper", "photos", "up.txt")]
            assert run(pfop, "hello.txt", fops)["code"] == DONE
        said = [line for line in server.output().splitlines() if "QINIU_ACCESS_KEY" in line]
        assert len(said) == 1, said


def test_without_credentials_a_synchronous_saveas_needs_no_sign(bucket):
    with dev_on(bucket, env=NO_CREDENTIALS) as server:
        path = signed_saveas(server, "hello.txt", "pfoptest/upper", ("photos", "up.txt"), auth=None)
        status, _, body = server.request("GET", path)
    assert status == 200 and json.loads(body)["key"] == "up.txt", body
    assert (bucket / "up.txt").read_bytes() == INPUT.upper()


def test_without_any_bucket_a_pfop_is_631_naming_the_option(point_sdk_at):
    with Server(PFOP, command="dev", env=CREDENTIALS) as server:
        point_sdk_at(server)
        _, info = qiniu.PersistentFop(AUTH, "photos").execute("hello.txt", ["pfoptest/upper"])
    refused(info, 631)
    assert "--bucket" in info.json()["error"]


def test_credentials_in_the_projects_env_file_are_required(tmp_path, bucket, point_sdk_at):
    project = project_with_env(tmp_path, [f"{name}={value}" for name, value in CREDENTIALS.items()])
    with dev_on(bucket, env={}, project=project) as server:
        point_sdk_at(server)
        refused(qiniu.PersistentFop(WRONG_AUTHS["another-secret-key"], "photos").execute(
            "hello.txt", ["pfoptest/upper"])[1], 401)
        assert submitted(qiniu.PersistentFop(AUTH, "photos"), "hello.txt", ["pfoptest/upper"])
        assert "QINIU_ACCESS_KEY" not in server.output()


def test_credentials_added_to_the_env_file_are_required_after_the_reload(tmp_path, bucket, point_sdk_at):
    project = project_with_env(tmp_path, [])
    wrong = qiniu.PersistentFop(WRONG_AUTHS["another-secret-key"], "photos")
    with dev_on(bucket, env={}, project=project) as server:
        point_sdk_at(server)
        assert submitted(wrong, "hello.txt", ["pfoptest/upper"])
        (project / ".env").write_text("UFOP_NAME=pfoptest\n" + "".join(
            f"{name}={value}\n" for name, value in CREDENTIALS.items()), encoding="utf-8")
        wait_for(lambda: wrong.execute("hello.txt", ["pfoptest/upper"])[1].status_code == 401,
                 "the new credentials to count", within=20)
        assert submitted(qiniu.PersistentFop(AUTH, "photos"), "hello.txt", ["pfoptest/upper"])


# -- the playground's own way to start a job (/_dev/jobs: unsigned) -------------------------------------

def start_from_a_page(server, origin, key):
    """POST /_dev/jobs as a page at `origin` would: a job of upper saved over `key`, forced."""
    form = {"bucket": "photos", "key": "hello.txt", "force": "1",
            "fops": qiniu.op_save("pfoptest/upper", "photos", key)}
    return requests.post(server.url + "/_dev/jobs", data=form, headers={"Origin": origin}, timeout=30)


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "null"])
def test_another_sites_page_cannot_start_a_job_through_the_playground(server, folders, origin):
    (folders / "photos" / "kept.txt").write_bytes(b"the developer's own\n")
    response = start_from_a_page(server, origin, "kept.txt")
    assert response.status_code == 403 and response.json()["error"], response.text
    time.sleep(1)  # a job started anyway would have written by now
    assert (folders / "photos" / "kept.txt").read_bytes() == b"the developer's own\n"


def test_the_playground_page_itself_starts_a_job_unsigned(server, folders, point_sdk_at):
    response = start_from_a_page(server, server.url, "from-the-page.txt")
    assert response.status_code == 200, response.text
    point_sdk_at(server)
    status = finished(qiniu.PersistentFop(AUTH, "photos"), response.json()["persistentId"])
    check_saved(status["items"][0], folders / "photos", "from-the-page.txt", INPUT.upper())


# -- notify ----------------------------------------------------------------------------------------------

def test_a_notify_that_keeps_failing_gives_code_4_after_2_to_5_attempts(server, notify, point_sdk_at):
    point_sdk_at(server)
    notify.receive("/broken", status=500)
    pfop = qiniu.PersistentFop(AUTH, "photos", notify_url=notify.url("/broken"))
    persistent_id = submitted(pfop, "hello.txt", ["pfoptest/upper"])
    status = status_when(pfop, persistent_id, lambda status: status["code"] == CALLBACK_FAILED)
    attempts = len(notify.posted)
    time.sleep(2)  # an attempt after the job gave up would show now
    assert 2 <= attempts == len(notify.posted) <= 5, notify.posted
    assert status["items"][0]["code"] == DONE, status


# -- state across restarts and reloads -------------------------------------------------------------------

def test_a_finished_jobs_status_survives_a_dev_restart(bucket, point_sdk_at):
    pfop = qiniu.PersistentFop(AUTH, "photos")
    with dev_on(bucket) as server:
        point_sdk_at(server)
        fops = [qiniu.op_save("pfoptest/upper", "photos", "up.txt"), "pfoptest/fail"]
        before = run(pfop, "hello.txt", fops)
    with dev_on(bucket) as server:
        point_sdk_at(server)
        assert pfop.get_status(before["id"])[0] == before


def test_a_job_file_dev_cannot_read_is_skipped_and_the_others_still_answered(bucket, point_sdk_at):
    pfop = qiniu.PersistentFop(AUTH, "photos")
    with dev_on(bucket) as server:
        point_sdk_at(server)
        before = run(pfop, "hello.txt", ["pfoptest/upper"])
    (bucket / ".ufop-dev" / "jobs" / "broken.json").write_text("{not json")
    (bucket / ".ufop-dev" / "jobs" / "other.json").write_text('{"id": "other"}')
    with dev_on(bucket) as server:
        point_sdk_at(server)
        assert pfop.get_status(before["id"])[0] == before
        refused(pfop.get_status("broken")[1], 612)


def test_a_job_unfinished_when_dev_stopped_is_failed_after_restart(bucket, point_sdk_at):
    pfop = qiniu.PersistentFop(AUTH, "photos")
    with dev_on(bucket) as server:
        point_sdk_at(server)
        persistent_id = submitted(pfop, "hello.txt", ["pfoptest/sleep/30"])
        status_when(pfop, persistent_id, lambda status: status["code"] == RUNNING)
    with dev_on(bucket) as server:
        point_sdk_at(server)
        status = pfop.get_status(persistent_id)[0]
    assert status["code"] == FAILED and status["items"][0]["code"] == FAILED, status


def test_a_job_stopped_while_its_callback_was_tried_reads_callback_failed_after_restart(bucket, notify,
                                                                                        point_sdk_at):
    notify.receive("/broken", status=500)
    pfop = qiniu.PersistentFop(AUTH, "photos", notify_url=notify.url("/broken"))
    with dev_on(bucket) as server:
        point_sdk_at(server)
        persistent_id = submitted(pfop, "hello.txt", ["pfoptest/upper"])
        wait_for(lambda: notify.posted, "the first attempt of the callback")
    with dev_on(bucket) as server:
        point_sdk_at(server)
        status = pfop.get_status(persistent_id)[0]
    # its fop ended well before dev stopped: not "failed" (3 says a fop failed), its callback did
    assert (status["code"], codes_of(status)) == (CALLBACK_FAILED, [DONE]), status


@pytest.fixture
def reloading(tmp_path, bucket, point_sdk_at):
    """A dev server on `bucket` of a copy of the pfop project, the SDK pointed at it, and `reload()`
    that edits processors.py and returns once the server has reloaded it."""
    project = project_with_env(tmp_path, [])
    with dev_on(bucket, project=project) as server:
        point_sdk_at(server)

        def reload():
            with open(project / "processors.py", "a", encoding="utf-8") as source:
                source.write("\n# edited\n")
            wait_for(lambda: "reloading" in server.output(), "dev to reload")
            assert server.post("pfoptest/upper", b"after the reload")[::2] == (200, b"AFTER THE RELOAD")

        yield reload


def test_a_jobs_status_survives_a_reload(reloading):
    pfop = qiniu.PersistentFop(AUTH, "photos")
    before = run(pfop, "hello.txt", [qiniu.op_save("pfoptest/upper", "photos", "up.txt")])
    reloading()
    assert pfop.get_status(before["id"])[0] == before


def test_a_job_running_while_dev_reloads_still_ends_done(reloading, bucket):
    pfop = qiniu.PersistentFop(AUTH, "photos")
    persistent_id = submitted(pfop, "hello.txt", [qiniu.op_save("pfoptest/sleep/3", "photos", "slept.txt")])
    status_when(pfop, persistent_id, lambda status: status["code"] == RUNNING)
    reloading()
    status = finished(pfop, persistent_id)
    assert status["code"] == DONE, status
    check_saved(status["items"][0], bucket, "slept.txt", INPUT)


# -- the synchronous form with saveas --------------------------------------------------------------------

def signed_saveas(server, key, fop, target, auth=AUTH):
    """The path and query of ``GET /<key>?<fop>|saveas/<target>/sign/<AK>:<sign>``, signed as Qiniu asks:
    the URL without its scheme, up to before ``/sign/``, signed by `auth` (None: no sign)."""
    path_and_query = f"/{quote(key)}?{fop}|saveas/{qiniu.entry(*target)}"
    if auth is None:
        return path_and_query
    return f"{path_and_query}/sign/{auth.token(f'127.0.0.1:{server.port}{path_and_query}')}"


def test_a_signed_synchronous_saveas_stores_the_output_and_answers_its_key_and_hash(server, folders):
    status, headers, body = server.request("GET", signed_saveas(server, "hello.txt", "pfoptest/upper",
                                                                ("photos", "sync/upper.txt")))
    assert status == 200, body
    saved = folders / "photos" / "sync/upper.txt"
    assert saved.read_bytes() == INPUT.upper()
    assert json.loads(body) == {"key": "sync/upper.txt", "hash": qiniu.etag(str(saved))}


BAD_SIGNS = {"missing": (None, "pfoptest/upper"),
             "another-secret-key": (WRONG_AUTHS["another-secret-key"], "pfoptest/upper"),
             "another-access-key": (WRONG_AUTHS["another-access-key"], "pfoptest/upper"),
             "another-fop": (AUTH, "pfoptest/reverse")}  # signed for reverse, asked for upper


@pytest.mark.parametrize("auth, signed_fop", BAD_SIGNS.values(), ids=BAD_SIGNS)
def test_a_synchronous_saveas_without_a_good_sign_is_401_and_saves_nothing(server, folders, auth, signed_fop):
    path = signed_saveas(server, "hello.txt", signed_fop, ("photos", "unsigned/upper.txt"), auth=auth)
    status, _, body = server.request("GET", path.replace(signed_fop, "pfoptest/upper", 1))
    assert status == 401, body
    assert json.loads(body)["error"]
    assert not (folders / "photos" / "unsigned").exists()


@pytest.mark.parametrize("target", ESCAPES.values(), ids=ESCAPES)
def test_a_signed_synchronous_saveas_out_of_the_buckets_is_refused_and_writes_nothing(server, folders,
                                                                                      target):
    status, _, body = server.request("GET", signed_saveas(server, "hello.txt", "pfoptest/upper", target))
    assert status >= 400 and json.loads(body)["error"], body
    assert not [path for path in folders.rglob("escaped.txt")], "a saveas escaped"
