#!/usr/bin/env python3
"""The straightforward capture handler a user would write by hand, as the baseline for
benches/capture.rs: `json` + `base64` + `zipfile` (standard library only).

    capture_baseline.py BODY.json...

For each body file prints one line: "<median seconds> <upload bytes>". The handler does the same
work as `capture::prepare_frames_upload`: parse the on_capture_complete JSON (both shapes), decode
every frame's data URL, store the images in a ZIP (no compression, as JPEGs do not shrink) and
build the multipart/form-data body of POST /api/folders/ with the ZIP and the payload JSON.
It checks less than the Rust code does (no strict base64, no magic bytes, no field paths), which
only favours Python.
"""

import base64
import io
import json
import statistics
import sys
import time
import uuid
import zipfile


def handle(body: bytes, request_id: str) -> bytes:
    doc = json.loads(body)
    src = doc.get("from_virtual_camera") or doc
    frames = src["frame_list"]
    if not frames:
        raise ValueError("no frames")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i, url in enumerate(frames, 1):
            head, data = url.split(",", 1)
            if head == "data:image/jpeg;base64":
                ext = "jpg"
            elif head == "data:image/png;base64":
                ext = "png"
            else:
                raise ValueError(f"frame {i}: not a JPEG or PNG data URL")
            z.writestr(f"{i:06}.{ext}", base64.b64decode(data))
    payload = json.dumps(
        {
            "media:tags": {"video1": ["video_selfie", "video_selfie_blank", "orientation_portrait"]},
            "media:meta_data": {"video1": {"additional_info": src.get("additional_info")}},
            "folder:meta_data": {"request_id": request_id, "virtual_camera": "from_virtual_camera" in doc
                                 and doc["from_virtual_camera"] is not None},
        },
        separators=(",", ":"),
    ).encode()
    boundary = f"oz-capture-proxy-{uuid.uuid4().hex}".encode()
    return b"".join(
        [
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="video1"; filename="capture.zip"\r\n',
            b"Content-Type: application/zip\r\n\r\n",
            buf.getvalue(),
            b"\r\n--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="payload"\r\n',
            b"Content-Type: application/json\r\n\r\n",
            payload,
            b"\r\n--" + boundary + b"--\r\n",
        ]
    )


def main() -> None:
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            body = f.read()
        upload = handle(body, "3f2b8c1e-6d3a-4f0e-9a7b-5c2d1e0f9a8b")  # warm-up
        times = []
        start = time.perf_counter()
        while len(times) < 5 or (time.perf_counter() - start < 2.0 and len(times) < 100):
            t = time.perf_counter()
            upload = handle(body, "3f2b8c1e-6d3a-4f0e-9a7b-5c2d1e0f9a8b")
            times.append(time.perf_counter() - t)
        print(f"{statistics.median(times):.6f} {len(upload)}", flush=True)


if __name__ == "__main__":
    main()
