// worldmap.mjs turns Natural Earth country outlines (public domain), as
// packaged in TopoJSON by the npm package world-atlas, into the compact
// static file the browser app draws its map from: one simplified SVG path
// per ISO 3166-1 alpha-2 code, already projected, plus a dot for each small
// country that only the 1:50m data has. It runs once, by hand; its output,
// web/static/world.json, is committed. The app has no runtime dependency.
//
//   npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
//   node web/tools/worldmap.mjs package /usr/share/iso-codes/json/iso_3166-1.json > web/static/world.json
//
// The numeric-to-alpha-2 table comes from Debian's iso-codes package.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { project, WIDTH, HEIGHT } from '../static/js/projection.js';

const [dir, isoFile] = process.argv.slice(2);
if (!dir || !isoFile) {
  console.error('usage: node worldmap.mjs WORLD_ATLAS_DIR ISO_3166-1_JSON');
  process.exit(2);
}

const alpha2 = new Map();
for (const c of JSON.parse(readFileSync(isoFile, 'utf8'))['3166-1']) alpha2.set(c.numeric, c.alpha_2);
// Features Natural Earth gives no numeric code.
const byName = { Kosovo: 'XK', Somaliland: 'SO', 'N. Cyprus': 'CY' };

function codeOf(g) {
  if (g.id && alpha2.has(g.id)) return alpha2.get(g.id);
  return byName[g.properties?.name] ?? null;
}

// decodeArcs undoes TopoJSON's quantisation and delta encoding.
function decodeArcs(topo) {
  const [sx, sy] = topo.transform.scale, [tx, ty] = topo.transform.translate;
  return topo.arcs.map((arc) => {
    let x = 0, y = 0;
    return arc.map(([dx, dy]) => {
      x += dx; y += dy;
      return [x * sx + tx, y * sy + ty];
    });
  });
}

function ring(arcs, indexes) {
  const pts = [];
  for (const i of indexes) {
    const a = i >= 0 ? arcs[i] : arcs[~i].slice().reverse();
    pts.push(...(pts.length ? a.slice(1) : a));
  }
  return pts;
}

function polygons(g, arcs) {
  if (g.type === 'Polygon') return [g.arcs.map((r) => ring(arcs, r))];
  if (g.type === 'MultiPolygon') return g.arcs.map((p) => p.map((r) => ring(arcs, r)));
  return [];
}

// simplify is Douglas–Peucker on projected points.
function simplify(pts, tol) {
  if (pts.length < 4) return pts;
  const keep = new Uint8Array(pts.length);
  keep[0] = keep[pts.length - 1] = 1;
  const stack = [[0, pts.length - 1]];
  while (stack.length) {
    const [a, b] = stack.pop();
    const [ax, ay] = pts[a], [bx, by] = pts[b];
    const dx = bx - ax, dy = by - ay, len = Math.hypot(dx, dy);
    let best = -1, far = 0;
    for (let i = a + 1; i < b; i++) {
      // A closed ring starts and ends on one point: measure from it.
      const d = len === 0 ? Math.hypot(pts[i][0] - ax, pts[i][1] - ay)
        : Math.abs(dy * (pts[i][0] - ax) - dx * (pts[i][1] - ay)) / len;
      if (d > far) { far = d; best = i; }
    }
    if (far > tol && best > 0) {
      keep[best] = 1;
      stack.push([a, best], [best, b]);
    }
  }
  return pts.filter((_, i) => keep[i]);
}

// unwrap keeps a ring continuous where it crosses the antimeridian (Russia,
// Fiji): longitudes run past ±180 instead of jumping across the map, and
// the part beyond the edge is clipped by the SVG's view box.
function unwrap(ring) {
  let shift = 0, prev = ring[0][0];
  return ring.map(([lon, lat]) => {
    if (lon - prev > 180) shift -= 360;
    else if (prev - lon > 180) shift += 360;
    prev = lon;
    return [lon + shift, lat];
  });
}

function area(pts) {
  let s = 0;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) s += (pts[j][0] + pts[i][0]) * (pts[j][1] - pts[i][1]);
  return Math.abs(s / 2);
}

const r1 = (v) => Math.round(v * 10) / 10;

// path writes rings as SVG path data: an absolute move to each ring's
// first point, relative lines after it, one decimal.
function path(rings) {
  const num = (v) => String(r1(v));
  let out = '';
  for (const pts of rings) {
    let [px, py] = [r1(pts[0][0]), r1(pts[0][1])];
    out += `M${num(px)} ${num(py)}l`;
    const steps = [];
    for (const [x, y] of pts.slice(1, -1)) {
      const qx = r1(x), qy = r1(y);
      const dx = r1(qx - px), dy = r1(qy - py);
      if (dx === 0 && dy === 0) continue;
      steps.push(num(dx), num(dy));
      px = qx; py = qy;
    }
    out += steps.join(' ').replace(/ -/g, '-') + 'z';
  }
  return out;
}

const TOL = 0.45;
const shapes = {}, dots = {};

function add(topo, onlyMissing) {
  const arcs = decodeArcs(topo);
  for (const g of topo.objects.countries.geometries) {
    const code = codeOf(g);
    if (!code || code === 'AQ') continue;
    if (onlyMissing && (shapes[code] || dots[code])) continue;
    const rings = [];
    let biggest = null, biggestArea = -1;
    for (const poly of polygons(g, arcs)) {
      for (const r of poly) {
        const pts = unwrap(r).map(([lon, lat]) => project(lon, lat));
        const a = area(pts);
        if (a > biggestArea) { biggestArea = a; biggest = pts; }
        const s = simplify(pts, TOL);
        if (s.length >= 4 && area(s) >= 0.4) rings.push(s);
      }
    }
    if (rings.length) {
      shapes[code] = (shapes[code] ?? []).concat(rings);
    } else if (biggest) {
      const n = biggest.length;
      dots[code] = [r1(biggest.reduce((s, p) => s + p[0], 0) / n), r1(biggest.reduce((s, p) => s + p[1], 0) / n)];
    }
  }
}

add(JSON.parse(readFileSync(join(dir, 'countries-110m.json'), 'utf8')), false);
add(JSON.parse(readFileSync(join(dir, 'countries-50m.json'), 'utf8')), true);

const out = { w: WIDTH, h: HEIGHT, shapes: {}, dots };
for (const code of Object.keys(shapes).sort()) out.shapes[code] = path(shapes[code]);
process.stdout.write(JSON.stringify(out) + '\n');
