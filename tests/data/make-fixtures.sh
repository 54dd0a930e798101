#!/bin/sh
# Regenerates the compressed-format fixtures the decode tests read: a 0.5 s,
# 440 Hz sine at half scale, 44.1 kHz stereo, in FLAC, MP3 and OGG/Vorbis.
# Needs: apt-get install sox flac lame vorbis-tools
set -eu
cd "$(dirname "$0")"
sox -n -r 44100 -c 2 -b 16 sine.wav synth 0.5 sine 440 vol 0.5
flac -s -f --best -o sine.flac sine.wav
lame --quiet -b 64 sine.wav sine.mp3
oggenc -Q -q 1 -o sine.ogg sine.wav
rm sine.wav
