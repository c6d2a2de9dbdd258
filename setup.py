import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "ufop_sdk" / "__init__.py").read_text()).group(1)

setup(
    name="ufop-sdk",
    version=VERSION,
    description="Write Qiniu custom data processing services (UFOP) as Python classes.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["ufop_sdk", "ufop_sdk.*", "qiniu_ufop"]),
    package_data={"ufop_sdk": ["templates/**/*", "templates/*/.*"]},
    include_package_data=True,
    install_requires=[
        "attrs>=23.1",
        "celery>=5.7,<5.8",  # the series ufop_sdk/executors/celery/versions.py checks: Celery mode patches its internals
        "click>=8.1",
        "kombu>=5.7,<5.8",  # likewise
        "msgpack>=1.0",
        "prometheus-client>=0.17",
        "python-dotenv>=1.0",
        "python-magic>=0.4.27",
        "python-multipart>=0.0.18",  # dev's form upload (POST /) parses the multipart body as it streams to disk
        "redis[hiredis]>=5.0",
        "tornado>=6.4",
        "watchfiles>=0.21",
    ],
    extras_require={
        # qiniu: the official SDK, the client the platform emulation (dev) is tested with
        "test": ["pytest>=8", "ruff>=0.5", "pyyaml>=6", "hypothesis>=6", "qiniu>=7.18"],
        "samples": ["Pillow>=10"],
    },
    entry_points={"console_scripts": ["ufop-sdk=ufop_sdk.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)
