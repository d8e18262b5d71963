#!/usr/bin/env python3
"""Show that compare_with_omeropy.py notices wire differences.

Copies slice/ to a temporary folder, breaks it in a few wire-relevant ways
(member order, an optional tag, an operation mode, nonmutating, amd, an
exception's base, a sequence element type) and checks that the comparator
reports each one.  Same options as compare_with_omeropy.py.

    python3 interop/slicegen/selftest_compare.py --omeropy /tmp/omeropy
"""

import contextlib
import io
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_with_omeropy  # noqa: E402

# (file, old text, new text, what the comparator must print)
MUTATIONS = [
    ("omero/model/Dataset.ice",
     "omero::RString name;\n            omero::RString description;",
     "omero::RString description;\n            omero::RString name;",
     "DIFF ::omero::model::Dataset members"),
    ("Ice/Router.ice", "out optional(1) bool", "out optional(2) bool",
     "DIFF ::Ice::Router operation getClientProxy out"),
    ("Ice/Router.ice", '["nonmutating"] idempotent Object* getServerProxy',
     "idempotent Object* getServerProxy",
     "DIFF ::Ice::Router operation getServerProxy sendMode"),
    ("Glacier2/Router.ice", '["amd"] void refreshSession', "void refreshSession",
     "DIFF ::Glacier2::Router operation refreshSession amd"),
    ("omero/api/ISession.ice", "idempotent omero::model::Session getSession",
     "omero::model::Session getSession",
     "DIFF ::omero::api::ISession operation getSession mode"),
    ("omero/ServerErrors.ice", "exception RemovedSessionException extends omero::SessionException",
     "exception RemovedSessionException extends omero::ServerError",
     "DIFF ::omero::RemovedSessionException base"),
    ("Ice/BuiltinSequences.ice", "sequence<short> ShortSeq;", "sequence<int> ShortSeq;",
     "DIFF ::Ice::ShortSeq element"),
]


def main():
    args = sys.argv[1:]
    slice_dir = os.path.join(compare_with_omeropy.REPO, "slice")
    with tempfile.TemporaryDirectory() as tmp:
        broken = os.path.join(tmp, "slice")
        shutil.copytree(slice_dir, broken, ignore=shutil.ignore_patterns("slice2rs"))
        for rel, old, new, _ in MUTATIONS:
            path = os.path.join(broken, rel)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if old not in text:
                raise SystemExit("selftest out of date: %r not in %s" % (old, rel))
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new, 1))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = compare_with_omeropy.main(["--slice-dir", broken] + args)
    report = out.getvalue()
    missed = [want for _, _, _, want in MUTATIONS if want not in report]
    for want in missed:
        print("NOT DETECTED: " + want)
    if status == 0 or missed:
        print(report)
        return 1
    print("all %d injected differences detected" % len(MUTATIONS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
