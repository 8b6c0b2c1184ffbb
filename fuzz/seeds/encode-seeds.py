#!/usr/bin/env python3
"""Seeds from real encodes: fuzz/corpus/flv_tags, codec_configs and cmaf_writer.

    python3 fuzz/seeds/encode-seeds.py        (needs ffmpeg with libx264, libx265, libaom)

ffmpeg encodes test patterns (H.264, HEVC, AV1, AAC, MP3, Sorenson/ADPCM) single-threaded
and bit-exact, so a rerun with the same ffmpeg writes the same files. From them:

- flv_tags: the tags of `ffmpeg -f flv` files (onMetaData, sequence headers, frames with
  their composition times, end of sequence) as the target's input, an arbitrary-derived
  `Vec<Tag>`: per tag a byte 1 (one more element), the variant as a little-endian u32
  (variant i of 4 is i << 30), the u32 timestamp, and the body as a `Vec<u8>` (1 then
  the byte, per byte; 0 ends it). HEVC and AV1 (which Debian's ffmpeg 5.1 cannot put in
  FLV) come from MP4 encodes, wrapped in Enhanced RTMP tags (hvc1/av01 SequenceStart and
  CodedFrames), as are the H.264/AAC tags once more (avc1, mp4a). A whole small FLV file
  is the `File` variant.
- codec_configs: raw bytes, each file one thing: avcC (High, Baseline, High 4:2:2, High
  10), hvcC (Main, Main 10), av1C, an AV1 sequence header OBU and an OBU temporal unit,
  AudioSpecificConfigs (LC at several rates and channel counts, Main, LTP), ADTS frames,
  H.264/HEVC access units (Annex B and length-prefixed).
- cmaf_writer: the target's `Input` (video bool, audio_rate index, start [u32; 2], then
  per frame a byte 1 and audio, duration u32, composition_offset i32, keyframe, len u8,
  cut), with the frame order, durations, composition offsets, keyframes and (scaled)
  sizes of real FLV encodes, cut into chunks as the packager cuts parts (~200 ms).
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(HERE), "corpus")
WORK = tempfile.mkdtemp(prefix="rivulet-seeds-")
EXACT = ["-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]


def ffmpeg(*args):
    """Runs ffmpeg with `args` (inputs and codecs, the output format last) and returns
    the output's bytes."""
    out = os.path.join(WORK, "out." + args[-1])
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args[:-1], *EXACT, "-f", args[-1], out]
    subprocess.run(cmd, check=True)
    with open(out, "rb") as f:
        return f.read()


def lavfi_video(size, rate, seconds):
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def lavfi_audio(rate, seconds):
    return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds}"]


# ---- containers -------------------------------------------------------------------


def flv_tags(data):
    """(type, timestamp ms, body) of each tag of an FLV file."""
    assert data[:3] == b"FLV"
    pos = struct.unpack(">I", data[5:9])[0] + 4
    tags = []
    while pos + 11 <= len(data):
        kind = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        tags.append((kind, ts, data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return tags


def mp4_boxes(data, start=0, end=None):
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[start + 8 : start + 16])[0]
            header = 16
        elif size == 0:
            size = end - start
        yield kind, start + header, start + size
        start += size


def mp4_find(data, path, start=0, end=None):
    for kind, body, box_end in mp4_boxes(data, start, end):
        if kind == path[0]:
            return (body, box_end) if len(path) == 1 else mp4_find(data, path[1:], body, box_end)
    return None


def mp4_video(data):
    """(record box type, record, [(dts ms, cts ms, key, sample)]) of a one-track MP4."""
    stbl = mp4_find(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl"])
    mdhd, _ = mp4_find(data, [b"moov", b"trak", b"mdia", b"mdhd"])
    timescale = struct.unpack(">I", data[mdhd + 12 : mdhd + 16])[0]
    stsd, stsd_end = mp4_find(data, [b"stsd"], *stbl)
    entry = stsd + 8  # version/flags, entry count
    record = None
    for kind, body, box_end in mp4_boxes(data, entry + 8 + 78, stsd_end):
        if kind in (b"hvcC", b"av1C"):
            record = (kind, data[body:box_end])
    stsz, _ = mp4_find(data, [b"stsz"], *stbl)
    count = struct.unpack(">I", data[stsz + 8 : stsz + 12])[0]
    sizes = struct.unpack(f">{count}I", data[stsz + 12 : stsz + 12 + 4 * count])
    stts, _ = mp4_find(data, [b"stts"], *stbl)
    deltas = []
    for i in range(struct.unpack(">I", data[stts + 4 : stts + 8])[0]):
        n, d = struct.unpack(">II", data[stts + 8 + 8 * i : stts + 16 + 8 * i])
        deltas += [d] * n
    offsets = [0] * count
    ctts = mp4_find(data, [b"ctts"], *stbl)
    if ctts:
        at = []
        c = ctts[0]
        for i in range(struct.unpack(">I", data[c + 4 : c + 8])[0]):
            n, o = struct.unpack(">Ii", data[c + 8 + 8 * i : c + 16 + 8 * i])
            at += [o] * n
        offsets = at
    keys = set(range(1, count + 1))
    stss = mp4_find(data, [b"stss"], *stbl)
    if stss:
        s = stss[0]
        n = struct.unpack(">I", data[s + 4 : s + 8])[0]
        keys = set(struct.unpack(f">{n}I", data[s + 8 : s + 8 + 4 * n]))
    # One track: its samples follow one another from the first chunk's offset.
    stco, _ = mp4_find(data, [b"stco"], *stbl)
    pos = struct.unpack(">I", data[stco + 8 : stco + 12])[0]
    samples, dts = [], 0
    for i, size in enumerate(sizes):
        samples.append(
            (dts * 1000 // timescale, offsets[i] * 1000 // timescale, i + 1 in keys, data[pos : pos + size])
        )
        pos += size
        dts += deltas[i]
    return record[0], record[1], samples


def nal_units_annexb(data):
    """Splits an Annex B stream at its start codes."""
    out, i, starts = [], 0, []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for n, s in enumerate(starts):
        e = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        out.append(data[s:e].rstrip(b"\x00"))
    return out


# ---- arbitrary encodings of the targets' inputs -----------------------------------


def arb_bytes(b):
    """A `Vec<u8>` read with `arbitrary_iter`: 1 and the byte per byte, 0 at the end."""
    out = bytearray()
    for x in b:
        out += bytes((1, x))
    return bytes(out) + b"\x00"


VIDEO, AUDIO, METADATA, FILE = range(4)


def flv_input(tags):
    """The flv_tags target's `Vec<Tag>` for [(variant, timestamp, body)]."""
    out = bytearray()
    for variant, ts, body in tags:
        out += b"\x01" + struct.pack("<I", variant << 30)
        if variant in (VIDEO, AUDIO):
            out += struct.pack("<I", ts & 0xFFFFFFFF)
        out += arb_bytes(body)
    return bytes(out)


def from_flv(tags):
    kinds = {8: AUDIO, 9: VIDEO, 18: METADATA}
    return [(kinds[k], ts, body) for k, ts, body in tags if k in kinds]


def enhanced(tags):
    """Legacy AVC/AAC tags rewritten as Enhanced RTMP (avc1, mp4a) tags."""
    out = []
    for variant, ts, body in tags:
        if variant == VIDEO and body[0] & 0x0F == 7:
            frame_type, packet_type = body[0] >> 4, body[1]
            if packet_type == 1:
                cts = body[2:5]
                body = bytes([0x80 | frame_type << 4 | (1 if cts != b"\0\0\0" else 3)]) + b"avc1" + (
                    cts + body[5:] if cts != b"\0\0\0" else body[5:]
                )
            else:
                body = bytes([0x80 | frame_type << 4 | packet_type]) + b"avc1" + body[5:]
        elif variant == AUDIO and body[0] >> 4 == 10:
            body = bytes([0x90 | body[1]]) + b"mp4a" + body[2:]
        out.append((variant, ts, body))
    return out


def enhanced_from_mp4(fourcc, record, samples):
    """Enhanced RTMP video tags: SequenceStart, CodedFrames, SequenceEnd."""
    tags = [(VIDEO, 0, bytes([0x80 | 1 << 4 | 0]) + fourcc + record)]
    for dts, cts, key, sample in samples:
        frame_type = 1 if key else 2
        if fourcc == b"av01":
            body = bytes([0x80 | frame_type << 4 | 1]) + fourcc + sample
        else:
            body = bytes([0x80 | frame_type << 4 | 1]) + fourcc + cts.to_bytes(3, "big", signed=True) + sample
        tags.append((VIDEO, dts, body))
    end = samples[-1][0] if samples else 0
    tags.append((VIDEO, end, bytes([0x80 | 1 << 4 | 2]) + fourcc))
    return tags


def cmaf_input(video, audio_rate_index, start, frames):
    """The cmaf_writer target's `Input`; frames: (audio, duration, cto, key, len, cut)."""
    out = bytearray()
    out += bytes((int(video), audio_rate_index)) + struct.pack("<II", *start)
    for audio, duration, cto, key, length, cut in frames:
        out += b"\x01" + bytes((int(audio),)) + struct.pack("<Ii", duration, cto)
        out += bytes((int(key), length, int(cut)))
    return bytes(out)


def cmaf_frames(tags, audio_rate, part_ms=200, scale=8, video=True):
    """Frames of real FLV tags in their order, in 90 kHz (video) and `audio_rate` ticks,
    sizes divided by `scale` (a u8), a chunk closed every `part_ms` of the main track."""
    media = []
    for kind, ts, body in tags:
        if kind == 9 and video and body[0] & 0x0F == 7 and body[1] == 1:
            cts = int.from_bytes(body[2:5], "big", signed=True)
            media.append([False, ts, cts, body[0] >> 4 == 1, len(body) - 5])
        elif kind == 8 and body[0] >> 4 == 10 and body[1] == 1:
            media.append([True, ts, 0, True, len(body) - 2])
    frames = []
    next_ts = {}
    for i in reversed(range(len(media))):
        audio, ts = media[i][0], media[i][1]
        next_ts.setdefault(audio, None)
        media[i].append(next_ts[audio])
        next_ts[audio] = ts
    main_is_audio = not video
    part_start = None
    for audio, ts, cts, key, size, nxt in media:
        if audio:
            duration = 1024
        else:
            duration = (nxt - ts) * 90 if nxt is not None else 3000
        if part_start is None and audio == main_is_audio:
            part_start = ts
        cut = audio == main_is_audio and nxt is not None and nxt - part_start >= part_ms
        if cut:
            part_start = None
        frames.append((audio, duration, cts * 90, key, max(1, min(255, size // (1 if audio else scale))), cut))
    return frames


# ---- the corpora ------------------------------------------------------------------


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    # H.264 (B-frames: composition times) + AAC, as OBS or ffmpeg would publish.
    h264_aac = ffmpeg(*lavfi_video("160x90", 15, 1), *lavfi_audio(44100, 1), "-c:v", "libx264",
                      "-preset", "veryfast", "-g", "15", "-b:v", "40k", "-c:a", "aac", "-b:a", "24k", "flv")
    # H.264 without B-frames (zerolatency) + AAC mono at 48 kHz.
    h264_zl = ffmpeg(*lavfi_video("128x72", 10, 1), *lavfi_audio(48000, 1), "-c:v", "libx264",
                     "-preset", "veryfast", "-tune", "zerolatency", "-g", "5", "-b:v", "30k",
                     "-c:a", "aac", "-ac", "1", "-b:a", "16k", "flv")
    mp3 = ffmpeg(*lavfi_audio(44100, 1), "-c:a", "libmp3lame", "-b:a", "32k", "flv")
    legacy = ffmpeg(*lavfi_video("64x36", 10, 0.5), *lavfi_audio(22050, 0.5), "-c:v", "flv1",
                    "-c:a", "adpcm_swf", "flv")
    tiny = ffmpeg(*lavfi_video("64x36", 10, 0.3), *lavfi_audio(44100, 0.3), "-c:v", "libx264",
                  "-preset", "ultrafast", "-c:a", "aac", "-b:a", "16k", "flv")
    hevc = ffmpeg(*lavfi_video("160x90", 10, 1), "-c:v", "libx265", "-preset", "ultrafast",
                  "-x265-params", "log-level=none:keyint=10:bframes=2", "-b:v", "40k", "-tag:v", "hvc1", "mp4")
    hevc10 = ffmpeg(*lavfi_video("64x36", 10, 0.2), "-c:v", "libx265", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=none", "mp4")
    av1 = ffmpeg(*lavfi_video("160x90", 10, 1), "-c:v", "libaom-av1", "-cpu-used", "8", "-usage",
                 "realtime", "-g", "10", "-b:v", "40k", "mp4")

    t_h264_aac = from_flv(flv_tags(h264_aac))
    t_h264_zl = from_flv(flv_tags(h264_zl))
    write("flv_tags", "ffmpeg-h264-aac", flv_input(t_h264_aac))
    write("flv_tags", "ffmpeg-h264-zerolatency-aac-48k-mono", flv_input(t_h264_zl))
    write("flv_tags", "ffmpeg-mp3", flv_input(from_flv(flv_tags(mp3))))
    write("flv_tags", "ffmpeg-sorenson-adpcm", flv_input(from_flv(flv_tags(legacy))))
    write("flv_tags", "enhanced-avc1-mp4a", flv_input(enhanced(t_h264_zl)))
    hevc_kind, hevc_record, hevc_samples = mp4_video(hevc)
    write("flv_tags", "enhanced-hvc1", flv_input(enhanced_from_mp4(b"hvc1", hevc_record, hevc_samples)))
    av1_kind, av1_record, av1_samples = mp4_video(av1)
    write("flv_tags", "enhanced-av01", flv_input(enhanced_from_mp4(b"av01", av1_record, av1_samples)))
    # A publisher that reconnects: its timestamps start again from 0.
    write("flv_tags", "ffmpeg-h264-aac-republished", flv_input(t_h264_zl[:12] + t_h264_zl))
    write("flv_tags", "ffmpeg-file", flv_input([(FILE, 0, tiny)]))

    # codec_configs: one structure per file.
    def avcc(*encode):
        tags = flv_tags(ffmpeg(*lavfi_video("64x36", 10, 0.1), "-c:v", "libx264", *encode, "flv"))
        return next(body[5:] for k, _, body in tags if k == 9 and body[1] == 0)

    write("codec_configs", "avcC-high", next(b[5:] for k, _, b in flv_tags(h264_aac) if k == 9 and b[1] == 0))
    write("codec_configs", "avcC-baseline", avcc("-profile:v", "baseline"))
    write("codec_configs", "avcC-high422", avcc("-pix_fmt", "yuv422p"))
    write("codec_configs", "avcC-high10", avcc("-pix_fmt", "yuv420p10le"))
    write("codec_configs", "hvcC-main", hevc_record)
    write("codec_configs", "hvcC-main10", mp4_video(hevc10)[1])
    write("codec_configs", "av1C", av1_record)
    obu = ffmpeg(*lavfi_video("64x36", 10, 0.2), "-c:v", "libaom-av1", "-cpu-used", "8", "-usage",
                 "realtime", "obu")
    # The first temporal unit: up to the second temporal delimiter (0x12 0x00).
    second = obu.find(b"\x12\x00", 2)
    write("codec_configs", "av1-temporal-unit", obu[: second if second > 0 else len(obu)])
    # av1C's configOBUs: the sequence header OBU.
    write("codec_configs", "av1-sequence-header-obu", av1_record[4:])
    for name, encode in [
        ("asc-lc-44100-stereo", ["-ar", "44100", "-ac", "2"]),
        ("asc-lc-48000-mono", ["-ar", "48000", "-ac", "1"]),
        ("asc-lc-8000-mono", ["-ar", "8000", "-ac", "1"]),
        ("asc-lc-96000-5.1", ["-ar", "96000", "-ac", "6"]),
        ("asc-main-22050-stereo", ["-ar", "22050", "-ac", "2", "-profile:a", "aac_main"]),
        ("asc-ltp-32000-stereo", ["-ar", "32000", "-ac", "2", "-profile:a", "aac_ltp", "-strict", "-2"]),
    ]:
        tags = flv_tags(ffmpeg(*lavfi_audio(48000, 0.1), "-c:a", "aac", *encode, "flv"))
        write("codec_configs", name, next(b[2:] for k, _, b in tags if k == 8 and b[1] == 0))
    for name, encode in [("adts-44100-stereo", ["-ar", "44100", "-ac", "2"]), ("adts-48000-mono", ["-ar", "48000", "-ac", "1"])]:
        adts = ffmpeg(*lavfi_audio(48000, 0.1), "-c:a", "aac", "-b:a", "32k", *encode, "adts")
        # Two frames.
        first = ((adts[3] & 3) << 11) | (adts[4] << 3) | (adts[5] >> 5)
        second = ((adts[first + 3] & 3) << 11) | (adts[first + 4] << 3) | (adts[first + 5] >> 5)
        write("codec_configs", name, adts[: first + second])
    annexb = ffmpeg(*lavfi_video("64x36", 10, 0.2), "-c:v", "libx264", "-preset", "ultrafast", "h264")
    write("codec_configs", "h264-annexb", annexb)
    write("codec_configs", "h264-avcc-idr", next(b[5:] for k, _, b in flv_tags(h264_aac) if k == 9 and b[1] == 1))
    hevc_annexb = ffmpeg(*lavfi_video("64x36", 10, 0.1), "-c:v", "libx265", "-preset", "ultrafast",
                         "-x265-params", "log-level=none", "hevc")
    write("codec_configs", "hevc-annexb", hevc_annexb)
    write("codec_configs", "hevc-length-prefixed-irap", hevc_samples[0][3])

    # cmaf_writer: real frame sequences (2 s, 30 fps, GOP of 1 s, AAC).
    src = flv_tags(ffmpeg(*lavfi_video("160x90", 30, 2), *lavfi_audio(44100, 2), "-c:v", "libx264",
                          "-preset", "veryfast", "-g", "30", "-b:v", "150k", "-c:a", "aac", "-b:a", "48k", "flv"))
    zl = flv_tags(ffmpeg(*lavfi_video("160x90", 30, 2), *lavfi_audio(48000, 2), "-c:v", "libx264",
                         "-preset", "veryfast", "-tune", "zerolatency", "-g", "60", "-b:v", "150k",
                         "-c:a", "aac", "-b:a", "48k", "flv"))
    low = flv_tags(ffmpeg(*lavfi_video("160x90", 25, 2), *lavfi_audio(8000, 2), "-c:v", "libx264",
                          "-preset", "veryfast", "-g", "50", "-b:v", "100k", "-c:a", "aac", "-ac", "1", "flv"))
    write("cmaf_writer", "h264-bframes-aac-44100-parts", cmaf_input(True, 2, (0, 0), cmaf_frames(src, 44100)))
    # An hour into a stream: large decode times.
    write("cmaf_writer", "h264-bframes-aac-44100-after-an-hour",
          cmaf_input(True, 2, (3600 * 90000, 3600 * 44100), cmaf_frames(src, 44100)))
    write("cmaf_writer", "h264-zerolatency-aac-48000-parts", cmaf_input(True, 3, (0, 0), cmaf_frames(zl, 48000)))
    # One chunk per frame (low-latency chunks) and one per segment.
    per_frame = [f[:5] + (True,) for f in cmaf_frames(zl, 48000)]
    write("cmaf_writer", "h264-zerolatency-chunk-per-frame", cmaf_input(True, 3, (0, 0), per_frame[:90]))
    per_segment = [f[:5] + (False,) for f in cmaf_frames(src, 44100)]
    write("cmaf_writer", "h264-bframes-chunk-per-segment", cmaf_input(True, 2, (0, 0), per_segment))
    write("cmaf_writer", "h264-25fps-aac-8000-mono", cmaf_input(True, 0, (0, 0), cmaf_frames(low, 8000)))
    write("cmaf_writer", "aac-48000-alone", cmaf_input(False, 3, (0, 0), cmaf_frames(zl, 48000, video=False)))

    for target in ("flv_tags", "codec_configs", "cmaf_writer"):
        d = os.path.join(CORPUS, target)
        files = sorted(os.listdir(d))
        print(f"{target}: {len(files)} files, {sum(os.path.getsize(os.path.join(d, f)) for f in files)} bytes")


if __name__ == "__main__":
    try:
        main()
    finally:
        subprocess.run(["rm", "-rf", WORK], check=False)
    sys.exit(0)
