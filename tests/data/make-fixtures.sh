#!/bin/sh
# Regenerates the compressed-format fixtures:
# - sine.{flac,mp3,ogg}: a 0.5 s, 440 Hz sine at half scale, 44.1 kHz stereo
#   (the decode tests);
# - music.{mp3,ogg}: 10 s of the demo song's mix at 48 kHz (the decode bench,
#   benches/audio.rs). Run assets/make-demo.sh first if assets/ changed.
# - sine.{aiff,opus}: the same sine as AIFF (sox) and Opus (opusenc);
# - burst.m4a: 1 s at 48 kHz, silent but for a 20 ms 1 kHz burst at 0.5 s,
#   AAC in MP4 by ffmpeg (whose edit list says to skip 1024 priming frames):
#   the encoder-delay tests.
# Needs: apt-get install sox flac lame vorbis-tools opus-tools ffmpeg
set -eu
cd "$(dirname "$0")"
sox -n -r 44100 -c 2 -b 16 sine.wav synth 0.5 sine 440 vol 0.5
flac -s -f --best -o sine.flac sine.wav
lame --quiet -b 64 sine.wav sine.mp3
oggenc -Q -q 1 -o sine.ogg sine.wav
sox sine.wav sine.aiff
opusenc --quiet --bitrate 64 sine.wav sine.opus
rm sine.wav
sox -n -r 48000 -c 2 -b 16 s1.wav trim 0 0.5
sox -n -r 48000 -c 2 -b 16 b.wav synth 0.02 sine 1000 vol 0.8
sox -n -r 48000 -c 2 -b 16 s2.wav trim 0 0.48
sox s1.wav b.wav s2.wav burst.wav
ffmpeg -loglevel error -y -i burst.wav -c:a aac -b:a 128k burst.m4a
rm s1.wav b.wav s2.wav burst.wav
demo=../../assets/demo
sox -m -v 0.7 $demo/drums.flac -v 0.7 $demo/bass.flac -v 0.7 $demo/keys.flac -v 0.7 $demo/lead.flac \
  -b 16 music.wav trim 10 10
lame --quiet -b 192 music.wav music.mp3
oggenc -Q -q 5 -o music.ogg music.wav
rm music.wav
