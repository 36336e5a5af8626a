#!/bin/sh
# Makes the committed test clips. Run once by hand (Debian's ffmpeg 5.1);
# CI never runs it.
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=320x240:rate=30" -t 2 \
  -c:v libvpx -b:v 300k -g 30 -keyint_min 30 -deadline realtime -cpu-used 8 -auto-alt-ref 0 pattern.ivf
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 2 \
  -ac 1 -c:a libopus -b:a 32k -frame_duration 20 -page_duration 20000 tone.ogg
