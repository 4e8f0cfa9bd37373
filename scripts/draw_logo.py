"""Draw the attention formula softmax(QKᵀ/√d_k)V as the app logo, attention.png.

Typesets it with Pillow and DejaVu Serif (italic Q, K, V, d, k), a drawn fraction bar and
stretched radical and parentheses; renders large, crops tightly, downsamples to a 140 px-high
transparent PNG in navy (#000080) at the repository root for st.logo("attention.png").

Run:  uv run python scripts/draw_logo.py
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
OUT = Path(__file__).resolve().parent.parent / "attention.png"
INK, HEIGHT, SS, PAD = "#000080", 140, 4, 0.05  # colour, px, supersampling, padding (em)
S, F = 100 * SS, 66 * SS  # font sizes: main text, numerator/denominator (scripts 0.7*F)


def font(size, italic=False):
    path = FONT_DIR / ("DejaVuSerif-Italic.ttf" if italic else "DejaVuSerif.ttf")
    if italic and not path.exists():  # the italic ships in fonts-dejavu-extra
        path = FONT_DIR / "DejaVuSerif.ttf"
    if not path.exists():
        raise SystemExit(f"Font not found: {path} (apt-get install -y fonts-dejavu-core)")
    return ImageFont.truetype(str(path), int(size))


rm, fi, sr, si = font(S), font(F, True), font(0.7 * F), font(0.7 * F, True)
mask = Image.new("L", (12 * S, 4 * S), 0)  # coverage; coloured navy at the end
draw = ImageDraw.Draw(mask)


def put(x, y, text, f):  # draw text with its left baseline at (x, y); return the new x
    draw.text((x, y), text, font=f, fill=255, anchor="ls")
    return x + f.getlength(text)


def stretch(x, char, top, bottom, size):  # glyph stretched vertically to span top..bottom
    glyph = Image.new("L", (S, 2 * S), 0)
    ImageDraw.Draw(glyph).text((0, 1.5 * S), char, font=font(size), fill=255, anchor="ls")
    glyph = glyph.crop(glyph.getbbox())
    mask.paste(255, (int(x), int(top)), glyph.resize((glyph.width, int(bottom - top))))
    return x + glyph.width


axis, t, gap = 2 * S, 0.045 * S, 0.08 * F  # fraction bar y, rule thickness, bar clearance
num_w = fi.getlength("QK") + 0.06 * F + sr.getlength("T")
den_w = font(F).getlength("√") + 0.04 * F + fi.getlength("d") + si.getlength("k")
frac_w = max(num_w, den_w) + 0.2 * F
num_y = axis - t / 2 - gap - fi.getbbox("Q", anchor="ls")[3]  # numerator baseline (Q's tail)
bar_y = axis + t + gap  # centre of the radical's overbar
den_y = bar_y + t / 2 + gap - fi.getbbox("d", anchor="ls")[1]  # denominator baseline
half = max(axis - num_y + 0.8 * F, den_y + 0.2 * F - axis)  # half height of the parentheses

x = put(0, axis + 0.26 * S, "softmax", rm) + 0.06 * S  # main baseline 0.26 em below axis
x = stretch(x, "(", axis - half, axis + half, 0.85 * S) + 0.05 * S
put(put(x + (frac_w - num_w) / 2, num_y, "QK", fi) + 0.06 * F, num_y - 0.36 * F, "T", sr)
xr = stretch(x + (frac_w - den_w) / 2, "√", bar_y - t / 2, den_y + 0.17 * F, F)
x0 = put(put(xr + 0.04 * F, den_y, "d", fi), den_y + 0.13 * F, "k", si)  # d, subscript k
draw.line([(xr - 1, bar_y), (x0 + 0.03 * F, bar_y)], 255, int(t))  # radical overbar
draw.line([(x, axis), (x + frac_w, axis)], 255, int(t))  # fraction bar
x = stretch(x + frac_w + 0.05 * S, ")", axis - half, axis + half, 0.85 * S) + 0.06 * S
put(x, axis + 0.26 * S, "V", font(S, True))

mask = ImageOps.expand(mask.crop(mask.getbbox()), int(PAD * S))  # tight crop + margin
mask = mask.resize((round(mask.width * HEIGHT / mask.height), HEIGHT), Image.LANCZOS)
logo = Image.new("RGBA", mask.size, INK)
logo.putalpha(mask)
logo.save(OUT, optimize=True)
print(f"Saved {OUT} ({logo.width}x{logo.height})")
