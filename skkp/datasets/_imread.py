"""Reading image files so that a damaged file is an error, not half a grey picture."""
import cv2
import numpy as np

_SOI, _SOS, _EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"


def read_image(path, flags=cv2.IMREAD_COLOR):
    """Read an image file like ``cv2.imread(path, flags)``, refusing damaged files.

    libjpeg decodes a truncated JPEG as far as it goes, fills the rest with grey and
    only prints a warning; here a JPEG whose last scan has no end-of-image marker
    after it is refused. (Inside the compressed data a 0xFF byte is always followed
    by 0x00 or a restart marker, so 0xFFD9 after the last start-of-scan can only
    be the real end.)

    Raises
    ------
    ValueError
        Naming the file: it cannot be read, it is not an image OpenCV can decode,
        or it is a truncated JPEG.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.jpg")
    >>> _ = cv2.imwrite(path, np.full((8, 8, 3), 128, np.uint8))
    >>> read_image(path).shape
    (8, 8, 3)
    >>> with open(path, "rb") as f:
    ...     data = f.read()
    >>> with open(path, "wb") as f:
    ...     _ = f.write(data[:-40])
    >>> read_image(path)
    Traceback (most recent call last):
    ...
    ValueError: truncated JPEG (no end-of-image marker after its last scan): ...
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    if data[:2] == _SOI:
        last_scan = data.rfind(_SOS)
        if last_scan < 0 or data.find(_EOI, last_scan) < 0:
            raise ValueError(f"truncated JPEG (no end-of-image marker after its last scan): {path}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if image is None:
        raise ValueError(f"cannot read image: {path}")
    return image
