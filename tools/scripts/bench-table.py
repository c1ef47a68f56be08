#!/usr/bin/python3
"""Print make bench's table from the JSON files of cae-cl-bench and
bench-torch: bench-table.py DIR NAME:BATCH ... [--clblast NAME:BATCH ...]
(files DIR/cl-NAME.json and DIR/torch-NAME.json; after --clblast,
DIR/clblast-NAME.json: the step with CLBlast GEMMs, printed beside the
host-BLAS figure)."""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"bench-table: {path}: {e}", file=sys.stderr)
        return None


def main():
    d = sys.argv[1]
    args = sys.argv[2:]
    clblast = []
    if "--clblast" in args:
        i = args.index("--clblast")
        args, clblast = args[:i], args[i + 1:]
    rows = []
    for spec in args:
        name, batch = spec.rsplit(":", 1)
        cl = load(os.path.join(d, f"cl-{name}.json"))
        th = load(os.path.join(d, f"torch-{name}.json"))
        rows.append((name, batch, cl, th))
    head = f"{'model':32} {'batch':>5} {'cae-cl img/s':>13} {'torch img/s':>12} {'ratio':>6} " \
           f"{'cl ms/step':>11} {'torch ms/step':>13} {'MFU':>6} {'launches':>9}"
    print(head)
    print("-" * len(head))
    for name, batch, cl, th in rows:
        ci = cl["images_per_s"] if cl else float("nan")
        ti = th["images_per_s"] if th else float("nan")
        ratio = ci / ti if cl and th and ti > 0 else float("nan")
        print(f"{name:32} {batch:>5} {ci:13.2f} {ti:12.2f} {ratio:5.2f}x "
              f"{cl['ms_per_step'] if cl else float('nan'):11.1f} "
              f"{th['ms_per_step'] if th else float('nan'):13.1f} "
              f"{100 * cl['mfu'] if cl else float('nan'):5.1f}% "
              f"{cl.get('launches_per_step', float('nan')) if cl else float('nan'):9.0f}")
    ok = all(cl and th for _, _, cl, th in rows)
    if clblast:
        print()
        head = f"{'model (GEMMs on CLBlast)':32} {'batch':>5} {'clblast img/s':>13} " \
               f"{'host img/s':>12} {'ratio':>6} {'MFU':>6}"
        print(head)
        print("-" * len(head))
        for spec in clblast:
            name, batch = spec.rsplit(":", 1)
            cb = load(os.path.join(d, f"clblast-{name}.json"))
            cl = load(os.path.join(d, f"cl-{name}.json"))
            ok = ok and cb is not None
            bi = cb["images_per_s"] if cb else float("nan")
            hi = cl["images_per_s"] if cl else float("nan")
            print(f"{name:32} {batch:>5} {bi:13.2f} {hi:12.2f} "
                  f"{bi / hi if cb and cl and hi > 0 else float('nan'):5.2f}x "
                  f"{100 * cb['mfu'] if cb else float('nan'):5.1f}%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
