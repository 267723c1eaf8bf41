"""The training data: the medical-cost CSVs inside the `insurance==0.0.5` wheel on PyPI.

The wheel is fetched with pip, pinned and hash-checked (data-requirements.txt holds its sha256),
into a cache directory that git ignores; the CSVs are read straight out of the zip and never
written to the repository. The shipped train.csv/test.csv split (936/402 rows) is kept as is.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = PACKAGE_DIR / "data-requirements.txt"
WHEEL_NAME = "insurance-0.0.5-py3-none-any.whl"
TRAIN_MEMBER = "my_model/datasets/train.csv"
TEST_MEMBER = "my_model/datasets/test.csv"
COLUMNS = ("age", "sex", "bmi", "children", "smoker", "region", "charges")


def default_cache_dir() -> Path:
    """examples/data/ next to the package in a source checkout (git-ignored), or $CACHEDMODEL_DATA_DIR."""
    return Path(os.environ.get("CACHEDMODEL_DATA_DIR", PACKAGE_DIR.parent / "data"))


def expected_sha256() -> str:
    """The sha256 pinned in data-requirements.txt."""
    for line in REQUIREMENTS_FILE.read_text().splitlines():
        if "--hash=sha256:" in line and not line.lstrip().startswith("#"):
            return line.split("--hash=sha256:")[1].split()[0]
    raise ValueError(f"no --hash=sha256: line in {REQUIREMENTS_FILE}")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheel(cache_dir: Path | None = None) -> Path:
    """Return the path of the verified wheel, downloading it with pip (hash-checked) when missing."""
    cache_dir = Path(cache_dir or default_cache_dir())
    wheel = cache_dir / WHEEL_NAME
    if wheel.exists() and sha256_of(wheel) == expected_sha256():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheel.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS_FILE), "-d", str(cache_dir)]
    subprocess.run(command, check=True)
    actual = sha256_of(wheel)
    if actual != expected_sha256():  # pip checked it already; a second look costs nothing
        raise RuntimeError(f"{wheel}: sha256 {actual} does not match the pinned {expected_sha256()}")
    return wheel


@dataclass(frozen=True)
class Dataset:
    """Rows as dicts with typed values (smoker as bool); `charges` is the target."""

    train: list[dict]
    test: list[dict]
    sha256: str


def _parse(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"unexpected CSV columns {reader.fieldnames}, expected {COLUMNS}")
    return [{"age": int(row["age"]), "sex": row["sex"], "bmi": float(row["bmi"]), "children": int(row["children"]),
             "smoker": row["smoker"] == "yes", "region": row["region"], "charges": float(row["charges"])}
            for row in reader]


def read_wheel(wheel: Path) -> Dataset:
    """Read the train and test CSVs out of the wheel, in memory."""
    with zipfile.ZipFile(wheel) as archive:
        train = _parse(archive.read(TRAIN_MEMBER).decode("utf-8"))
        test = _parse(archive.read(TEST_MEMBER).decode("utf-8"))
    return Dataset(train=train, test=test, sha256=sha256_of(wheel))


def load_dataset(cache_dir: Path | None = None) -> Dataset:
    return read_wheel(fetch_wheel(cache_dir))
