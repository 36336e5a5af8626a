// Camera and microphone: opening them with a chosen device, and measuring
// audio levels (for the microphone meter and the speaking indicator) with
// one shared WebAudio context.

export const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 } };

// CAMERA_LAYERS are the camera's simulcast encodings (180p/360p/720p from a
// 720p capture): each receiver gets the one that fits its tile, and the node
// caps it by the receiver's bandwidth. The rids are those the node knows.
export const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

// open asks for the devices wanted; it returns {stream, audio, video,
// error}: what it got, and why something is missing.
export async function openLocal({ audio = true, video = true, audioDevice, videoDevice } = {}) {
  const c = {
    audio: audio ? { deviceId: audioDevice ? { exact: audioDevice } : undefined, echoCancellation: true, noiseSuppression: true } : false,
    video: video ? { ...VIDEO, deviceId: videoDevice ? { exact: videoDevice } : undefined } : false,
  };
  if (!c.audio && !c.video) return { stream: new MediaStream(), audio: null, video: null, error: null };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(c);
    return { stream, audio: stream.getAudioTracks()[0] ?? null, video: stream.getVideoTracks()[0] ?? null, error: null };
  } catch (err) {
    // Try each kind alone: a missing camera should not cost the microphone.
    if (audio && video) {
      const a = await openLocal({ audio: true, video: false, audioDevice });
      const v = await openLocal({ audio: false, video: true, videoDevice });
      const stream = new MediaStream([a.audio, v.video].filter(Boolean));
      return { stream, audio: a.audio, video: v.video, error: a.error || v.error ? err : null };
    }
    return { stream: new MediaStream(), audio: null, video: null, error: err };
  }
}

export function describeMediaError(err, what = 'camera and microphone') {
  if (!err) return '';
  if (err.name === 'NotAllowedError' || err.name === 'SecurityError') {
    return `The browser is not allowed to use your ${what}. You can still join and listen, or allow access in the address bar and reload.`;
  }
  if (err.name === 'NotFoundError' || err.name === 'OverconstrainedError') return `No ${what} found. You can still join without it.`;
  if (err.name === 'NotReadableError') return `Your ${what} is in use by another program.`;
  return `Your ${what} could not be opened (${err.message}).`;
}

export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  return {
    audio: all.filter((d) => d.kind === 'audioinput' && d.deviceId),
    video: all.filter((d) => d.kind === 'videoinput' && d.deviceId),
  };
}

let ctx;
function audioContext() {
  ctx ??= new AudioContext();
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  return ctx;
}

// LevelMeter reports a 0..1 level of an audio track about ten times a
// second until stopped.
export class LevelMeter {
  constructor(track, onLevel) {
    const ac = audioContext();
    this.source = ac.createMediaStreamSource(new MediaStream([track]));
    this.analyser = ac.createAnalyser();
    this.analyser.fftSize = 512;
    this.source.connect(this.analyser);
    const buf = new Float32Array(this.analyser.fftSize);
    this.timer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const rms = Math.sqrt(sum / buf.length);
      onLevel(Math.min(1, rms * 6));
    }, 100);
  }

  stop() {
    clearInterval(this.timer);
    this.source.disconnect();
  }
}
