"""
``python -m sb3_cemah.zoo [ALGO]``: print this package's rl-zoo3 hyper-parameter folder, or the yml file
of ``ALGO``, e.g. ``python -m rl_zoo3.train --algo a2c --env ReacherBulletEnv-v0 -conf "$(python -m sb3_cemah.zoo a2c)"``.
"""

from __future__ import annotations

import argparse

from sb3_cemah.zoo import hyperparams_dir, hyperparams_file


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m sb3_cemah.zoo", description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("algo", nargs="?", help="print the yml file of this rl-zoo3 algorithm (cemah, cem, dqn, ...)")
    args = parser.parse_args(argv)
    if args.algo is None:
        print(hyperparams_dir())
        return
    path = hyperparams_file(args.algo)
    if not path.is_file():
        parser.error(f"no hyper-parameter file for {args.algo!r} in {hyperparams_dir()}")
    print(path)


if __name__ == "__main__":
    main()
