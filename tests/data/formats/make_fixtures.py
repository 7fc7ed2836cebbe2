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
