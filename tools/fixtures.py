"""fixtures.py: writes the named-tensor fixture files that tests/harness.c reads.

Format: b"FGFIX001", then per tensor: u32 name_len, name, u32 dtype (0 f32, 1 i32),
u32 ndim, i32 shape[ndim], little-endian data. Used by every tools/gen_*_fixtures.py.
"""
import struct

import numpy as np


def write_fixture(path, tensors):
    """tensors: dict name -> array-like (torch tensors are converted)."""
    with open(path, "wb") as f:
        f.write(b"FGFIX001")
        for name, t in tensors.items():
            if hasattr(t, "detach"):
                t = t.detach().cpu().numpy()
            a = np.asarray(t)
            if a.dtype.kind in "iub":
                a, dt = a.astype("<i4"), 1
            else:
                a, dt = a.astype("<f4"), 0
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<II", dt, a.ndim))
            f.write(struct.pack("<%di" % a.ndim, *a.shape))
            f.write(np.ascontiguousarray(a).tobytes())
