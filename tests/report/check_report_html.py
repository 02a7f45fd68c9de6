#!/usr/bin/python3
"""Checks a medscreen report.html in headless Chromium.

Usage: check_report_html.py REPORT_HTML [--count N] [--screenshot OUT.png]

1. Static: no external URL anywhere in the file (src/href/url() with a scheme other than
   data:), every overlay link is a relative overlays/... path to an existing file.
2. Rendered DOM (chromium --dump-dom on a probe copy of the page, in the same directory so
   relative links resolve): rows (tr.scan) carry data-rank 1..n in document order; scored
   rows come first by probability, highest first (ties by path), then skipped, then errors;
   every inline thumbnail decoded (naturalWidth > 0); clicking the first thumbnail opens the
   lightbox, which loads the overlay PNG from its relative path.
3. Screenshot (--window-size=1280,900): the page is not blank.

Exit: 0 pass, 1 fail, 2 usage, 77 chromium not installed (ctest's skip code)."""
import argparse
import html.parser
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import zlib

PROBE = """<script>
window.addEventListener('load', function () {
  var out = document.createElement('div');
  out.id = 'probe-result';
  document.body.appendChild(out);
  document.querySelectorAll('tr.scan img').forEach(function (im) {
    im.setAttribute('data-probe-w', String(im.naturalWidth));
  });
  var a = document.querySelector('a.thumb');
  if (!a) { out.setAttribute('data-lightbox', 'none'); return; }
  a.click();
  var lb = document.getElementById('lightbox'), im = lb.querySelector('img');
  out.setAttribute('data-lightbox', lb.hidden ? 'hidden' : 'shown');
  out.setAttribute('data-src', im.getAttribute('src') || '');
  function done() { out.setAttribute('data-lightbox-w', String(im.naturalWidth)); }
  if (im.complete && im.naturalWidth) done();
  else { im.addEventListener('load', done);
         im.addEventListener('error', function () { out.setAttribute('data-lightbox-w', 'error'); }); }
});
</script>
"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


def run_chromium(exe, profile, args, timeout=90):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions",
           "--hide-scrollbars", "--user-data-dir=" + profile] + args
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows, self.urls, self.thumb_links, self.probe, self.thumb_imgs = [], [], [], {}, []
        self.placeholders = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if k in a and a[k] is not None:
                self.urls.append(a[k])
        cls = (a.get("class") or "").split()
        if tag == "tr" and "scan" in cls:
            self.rows.append(a)
        if tag == "a" and "thumb" in cls:
            self.thumb_links.append(a.get("href"))
        if tag == "img" and (a.get("src") or "").startswith("data:image/jpeg;base64,"):
            self.thumb_imgs.append(a)
        if tag == "div" and "ph" in cls:
            self.placeholders += 1
        if a.get("id") == "probe-result":
            self.probe = a


def png_pixels(path):
    """Decodes an 8-bit, non-interlaced PNG (what Chromium writes) into (w, h, rows)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or interlace or ctype not in (0, 2, 4, 6):
        raise ValueError(f"unsupported PNG depth {depth} type {ctype} interlace {interlace}")
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def check_order(rows, fail):
    rank_order = {"ok": 0, "skipped": 1, "error": 2}
    prev = None
    for i, r in enumerate(rows):
        if r.get("data-rank") != str(i + 1):
            fail(f"row {i + 1}: data-rank {r.get('data-rank')!r}, expected {i + 1}")
        st = r.get("data-status")
        if st not in rank_order:
            fail(f"row {i + 1}: data-status {st!r}")
            continue
        prob = r.get("data-probability")
        key = (rank_order[st], -float(prob) if st == "ok" and prob is not None else 0.0,
               r.get("data-path") or "")
        if prev is not None and key < prev:
            fail(f"row {i + 1} ({r.get('data-path')!r}, {st}, {prob}) is out of order")
        prev = key


def main():
    ap = argparse.ArgumentParser(description="Check a medscreen report.html in headless Chromium")
    ap.add_argument("report")
    ap.add_argument("--count", type=int, help="expected number of scan rows")
    ap.add_argument("--screenshot", help="keep the screenshot here")
    args = ap.parse_args()

    exe = find_chromium()
    if exe is None:
        print("check_report_html: chromium is not installed; skipping", file=sys.stderr)
        return 77
    report = os.path.abspath(args.report)
    outdir = os.path.dirname(report)
    failures = []

    def fail(msg):
        failures.append(msg)
        print("FAIL:", msg)

    with open(report, "rb") as f:
        page = f.read().decode("utf-8")  # must be valid UTF-8

    static = Dom()
    static.feed(page)
    for u in static.urls:
        scheme = urllib.parse.urlsplit(u).scheme
        if u.startswith("//") or (scheme and scheme != "data"):
            fail(f"external or absolute URL: {u[:80]!r}")
    if "url(" in page and "url(data:" not in page:
        fail("CSS url() in the page")
    for href in static.thumb_links:
        if href is None or not href.startswith("overlays/"):
            fail(f"overlay link {href!r} is not overlays/...")
            continue
        if not os.path.isfile(os.path.join(outdir, urllib.parse.unquote(href))):
            fail(f"overlay link {href!r}: no such file next to the report")

    with tempfile.TemporaryDirectory(prefix="ms_chromium_") as tmp:
        fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".html", dir=outdir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(page.replace("</body>", PROBE + "</body>", 1).encode("utf-8"))
            rc, dom, err = run_chromium(exe, os.path.join(tmp, "p1"), [
                "--virtual-time-budget=5000", "--dump-dom", "file://" + probe])
        finally:
            os.unlink(probe)
        if rc != 0 or "<html" not in dom:
            fail(f"chromium --dump-dom failed (exit {rc}): {err.strip()[-400:]}")
            return 1
        d = Dom()
        d.feed(dom)
        if not d.rows and args.count != 0:
            fail("no tr.scan rows in the rendered DOM")
        if args.count is not None and len(d.rows) != args.count:
            fail(f"{len(d.rows)} scan rows, expected {args.count}")
        check_order(d.rows, fail)
        for im in d.thumb_imgs:
            if im.get("data-probe-w") in (None, "0"):
                fail(f"thumbnail {im.get('alt')!r} did not decode (naturalWidth "
                     f"{im.get('data-probe-w')})")
        if static.thumb_links:
            if d.probe.get("data-lightbox") != "shown":
                fail(f"clicking a thumbnail did not open the lightbox ({d.probe})")
            elif d.probe.get("data-src") != static.thumb_links[0]:
                fail(f"lightbox shows {d.probe.get('data-src')!r}, expected {static.thumb_links[0]!r}")
            elif d.probe.get("data-lightbox-w") in (None, "0", "error"):
                fail(f"lightbox overlay did not load ({d.probe.get('data-lightbox-w')})")

        shot = args.screenshot or os.path.join(tmp, "shot.png")
        rc, _, err = run_chromium(exe, os.path.join(tmp, "p2"), [
            "--screenshot=" + os.path.abspath(shot), "--window-size=1280,900",
            "--virtual-time-budget=5000", "file://" + report])
        if rc != 0 or not os.path.isfile(shot):
            fail(f"chromium --screenshot failed (exit {rc}): {err.strip()[-400:]}")
        else:
            w, h, bpp, rows = png_pixels(shot)
            colours, busy = set(), 0
            for y in range(0, h, 3):
                row = rows[y]
                for x in range(0, w, 3):
                    px = row[x * bpp:x * bpp + min(bpp, 3)]
                    colours.add(px)
                    if px != row[0:min(bpp, 3)]:
                        busy += 1
            total = ((h + 2) // 3) * ((w + 2) // 3)
            if len(colours) < 16 or busy < total // 50:
                fail(f"screenshot {w}x{h} looks blank: {len(colours)} colours, "
                     f"{busy}/{total} samples differ from their row's first pixel")

    n = len(failures)
    print(f"check_report_html: {report}: {'ok' if n == 0 else f'{n} failure(s)'}")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
