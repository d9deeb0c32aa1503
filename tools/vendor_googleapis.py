"""Copy Google's API protos from the installed googleapis-common-protos.

buf and protoc need the .proto sources of google/api, google/rpc and
google/type. They ship inside the googleapis-common-protos wheel; this copies
them into third_party/googleapis so buf can build the workspace offline.
Run it after upgrading googleapis-common-protos (make vendor-protos).
"""

from __future__ import annotations

import pathlib
import shutil
import sys

import google.api

PACKAGES = ("api", "rpc", "type")


def main() -> int:
    """Copy the protos and report how many files were written."""
    source_root = pathlib.Path(next(iter(google.api.__path__))).parent
    target_root = pathlib.Path(__file__).resolve().parent.parent / "third_party" / "googleapis" / "google"
    count = 0
    for package in PACKAGES:
        target = target_root / package
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for proto in sorted((source_root / package).glob("*.proto")):
            shutil.copy2(proto, target / proto.name)
            count += 1
    print(f"vendored {count} protos from {source_root} into {target_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
