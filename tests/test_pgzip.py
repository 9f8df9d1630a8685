import gzip
import hashlib
import io
import zlib

from hypothesis import given, settings, strategies as st

from atlasmith.package._pgzip import ParallelGzipWriter


def _pack(data: bytes, threads: int, block_size: int, pieces: int = 7) -> bytes:
    out = io.BytesIO()
    with ParallelGzipWriter(out, level=6, threads=threads, block_size=block_size) as writer:
        step = max(1, len(data) // pieces)
        for start in range(0, len(data), step):
            writer.write(data[start : start + step])
    return out.getvalue()


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=20_000), block=st.sampled_from([64, 1000, 4096, 1 << 20]))
def test_round_trip_and_same_bytes_whatever_the_threads(data: bytes, block: int) -> None:
    one = _pack(data, threads=1, block_size=block)
    four = _pack(data, threads=4, block_size=block, pieces=3)
    assert one == four
    assert gzip.decompress(one) == data


def test_real_atlas_data_is_a_standard_gzip_stream(bundled_data) -> None:
    data = (bundled_data / "reference.tiff").read_bytes() + (
        bundled_data / "README.txt"
    ).read_bytes()
    packed = _pack(data, threads=2, block_size=256 * 1024)
    assert packed[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no time, no name
    # the standard library and zlib read it, and the trailer's CRC32 and size are right
    assert gzip.decompress(packed) == data
    assert zlib.decompress(packed, 16 + zlib.MAX_WBITS) == data
    # block boundaries cost little: within 2 % of one single deflate stream
    assert len(packed) < 1.02 * len(gzip.compress(data, compresslevel=6, mtime=0))
    assert (
        hashlib.sha256(packed).hexdigest() == hashlib.sha256(_pack(data, 1, 256 * 1024)).hexdigest()
    )
