"""``convzoo site``: the zoo, a convolution and a run as a static site a student opens in a browser.

    from convzoo.site import build_site
    print(build_site("site", models="lenet*", runs=["runs/lenet"]))

A folder of HTML, CSS, JavaScript, JSON and images, offline (no CDN: Chart.js is vendored in this package,
onnxruntime-web installed from npm when the site is built), that works from any static host or ``python -m
http.server`` (and from disk where the browser allows). One module per part: the registry and inspector data
(:mod:`~convzoo.site.zoo`), the weights' pictures (:mod:`~convzoo.site.pictures`), the worked examples
(:mod:`~convzoo.site.convolution`), run directories (:mod:`~convzoo.site.runs`), the in-browser panels
(:mod:`~convzoo.site.tryit`), the page shell (:mod:`~convzoo.site.pages`) and the build
(:mod:`~convzoo.site.build`).
"""

from convzoo.site.build import SiteReport, build_site

__all__ = ["SiteReport", "build_site"]
