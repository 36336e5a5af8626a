// The Equal Earth projection (Šavrič, Patterson, Jenny 2018), scaled to the
// map's own units. The world map's outlines were projected with this same
// function by web/tools/worldmap.mjs, so node markers placed with it line up.

const A1 = 1.340264, A2 = -0.081106, A3 = 0.000893, A4 = 0.003796;
const M = Math.sqrt(3) / 2;

// Map units: 1000 wide; the height covers latitudes from NORTH to SOUTH.
export const WIDTH = 1000;
const SCALE = WIDTH / (2 * 2.70663);
const NORTH = 84, SOUTH = -57;

function raw(lon, lat) {
  const l = (lon * Math.PI) / 180, p = (lat * Math.PI) / 180;
  const t = Math.asin(M * Math.sin(p));
  const t2 = t * t, t6 = t2 * t2 * t2;
  const x = (l * Math.cos(t)) / (M * (A1 + 3 * A2 * t2 + t6 * (7 * A3 + 9 * A4 * t2)));
  const y = t * (A1 + A2 * t2 + t6 * (A3 + A4 * t2));
  return [x, y];
}

const TOP = raw(0, NORTH)[1] * SCALE;
export const HEIGHT = Math.round(TOP - raw(0, SOUTH)[1] * SCALE);

// project returns map coordinates (x right, y down) of a longitude and latitude.
export function project(lon, lat) {
  const [x, y] = raw(lon, Math.max(SOUTH - 10, Math.min(NORTH + 5, lat)));
  return [x * SCALE + WIDTH / 2, TOP - y * SCALE];
}
