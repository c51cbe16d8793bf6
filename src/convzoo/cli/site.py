"""``convzoo site OUT [--models PATTERN] [--runs RUN...] [--data-dir DIR] [--no-try-it]``: the static site.

Writes the zoo index, a page per model matching ``--models``, the convolution page and a page per run
directory into ``OUT`` (a new or empty folder, or a site built before, which is replaced): HTML, CSS, JavaScript,
JSON and images, offline (:mod:`convzoo.site`). Prints the pages, the size, the time and whatever was left out
(the pictures of weights whose data set is not found; the in-browser panels without npm or the ``export``
extra), then how to open it.
"""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("site", help="the zoo, the convolution examples and runs as a static site for a browser",
                       description="Build a static site (HTML, JavaScript, JSON, images; no server, no CDN): the "
                                   "zoo's index, a page per model (its layers as a tree, a diagram, the shipped "
                                   "weights' feature maps and an in-browser Try it panel), the convolution "
                                   "examples stepped window by window, and a page per run directory. Open it "
                                   "with python -m http.server -d OUT.")
    p.add_argument("out", metavar="OUT", help="the site's folder: new, empty, or a site built before (replaced)")
    p.add_argument("--models", default="*", metavar="PATTERN",
                   help="a glob of model names, as convzoo models takes (default: every model)")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN", help="run directories, one page each")
    p.add_argument("--data-dir", metavar="DIR", help="a folder holding the data sets as DIR/mnist, DIR/cifar10, "
                   "... for the weights' test images (default: where convzoo train looks: $CONVZOO_DATA, Debian's)")
    p.add_argument("--no-try-it", action="store_true",
                   help="leave out the in-browser panels (no ONNX export, no onnxruntime-web from npm)")
    p.set_defaults(_run=run, _prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from convzoo.site import build_site

    report = build_site(args.out, models=args.models, runs=args.runs, data_dir=args.data_dir,
                        try_it=not args.no_try_it)
    for page in report.pages:
        print(page)
    print(report)
    return 0
