#!/usr/bin/env python3
"""Writes the compressed-format fixtures of genrelab's decoding tests (needs: pip install soundfile).

One signal in every format: 2 s, stereo, 44.1 kHz; left = 440 Hz, right = 660 Hz, each at 0.3.
FLAC (16-bit, lossless), Ogg Vorbis and MP3 (lossy), plus a 16 kHz mono FLAC.
The tests rebuild the signal in Rust and compare.
"""
import numpy as np
import soundfile as sf

def signal(rate, seconds=2.0):
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], axis=1)

s = signal(44100)
sf.write("stereo44k.flac", s, 44100, format="FLAC", subtype="PCM_16")
sf.write("stereo44k.ogg", s, 44100, format="OGG", subtype="VORBIS")
sf.write("stereo44k.mp3", s, 44100, format="MP3", subtype="MPEG_LAYER_III")
sf.write("mono16k.flac", signal(16000).mean(axis=1), 16000, format="FLAC", subtype="PCM_16")

# AAC (lossy) and ALAC (lossless, 0.5 s) in an MP4 container (.m4a), as music stores and phones write them:
# PyAV's FFmpeg encoders (needs: pip install av).
import av

def write_m4a(path, codec, samples, rate, sample_format):
    with av.open(path, "w", format="ipod") as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        if codec == "aac":
            stream.bit_rate = 128_000
        pcm = (samples * 32767).round().astype(np.int16) if sample_format == "s16p" else samples.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T), format=sample_format, layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)

write_m4a("stereo44k_aac.m4a", "aac", s, 44100, "fltp")
write_m4a("stereo44k_alac.m4a", "alac", signal(44100, 0.5), 44100, "s16p")  # 0.5 s: lossless is large
