#!/bin/sh
# Regenerates the compressed-format fixtures:
# - sine.{flac,mp3,ogg}: a 0.5 s, 440 Hz sine at half scale, 44.1 kHz stereo
#   (the decode tests);
# - music.{mp3,ogg}: 10 s of the demo song's mix at 48 kHz (the decode bench,
#   benches/audio.rs). Run assets/make-demo.sh first if assets/ changed.
# Needs: apt-get install sox flac lame vorbis-tools
set -eu
cd "$(dirname "$0")"
sox -n -r 44100 -c 2 -b 16 sine.wav synth 0.5 sine 440 vol 0.5
flac -s -f --best -o sine.flac sine.wav
lame --quiet -b 64 sine.wav sine.mp3
oggenc -Q -q 1 -o sine.ogg sine.wav
rm sine.wav
demo=../../assets/demo
sox -m -v 0.7 $demo/drums.flac -v 0.7 $demo/bass.flac -v 0.7 $demo/keys.flac -v 0.7 $demo/lead.flac \
  -b 16 music.wav trim 10 10
lame --quiet -b 192 music.wav music.mp3
oggenc -Q -q 5 -o music.ogg music.wav
rm music.wav
