// Command gencountries writes geo/countries.go, the country table, from two
// inputs so that the table can be checked and regenerated rather than
// hand-edited:
//
//   - codes and English short names: Debian's iso-codes package
//     (/usr/share/iso-codes/json/iso_3166-1.json, LGPL-2.1+; the codes and
//     names themselves are ISO 3166-1 facts);
//   - representative points: dspl_countries.csv beside this file, the
//     country table of Google's Dataset Publishing Language canonical
//     datasets (github.com/google/dspl, Copyright 2018 Google Inc.,
//     BSD 3-Clause licence), completed and adjusted by the tables below.
//
// Run it from the geo directory with `go generate`.
package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
)

// point is a latitude/longitude with the reason it differs from (or is
// missing in) the DSPL table.
type point struct {
	lat, lon float64
	why      string
}

// supplements covers ISO codes that the DSPL table predates or leaves blank.
var supplements = map[string]point{
	"AX": {60.18, 19.95, "Åland; absent from the DSPL table"},
	"BL": {17.90, -62.83, "Saint Barthélemy; absent from the DSPL table"},
	"BQ": {12.18, -68.26, "Bonaire (most populous of the three islands); absent from the DSPL table"},
	"CW": {12.17, -68.99, "Curaçao; absent from the DSPL table"},
	"MF": {18.08, -63.05, "Saint Martin (French part); absent from the DSPL table"},
	"SS": {7.86, 29.69, "South Sudan (independent since 2011); absent from the DSPL table"},
	"SX": {18.04, -63.07, "Sint Maarten (Dutch part); absent from the DSPL table"},
	"UM": {19.28, 166.65, "Wake Island stands for the scattered outlying islands; blank in the DSPL table"},
}

// overrides replaces geographic centres that sit far from where people live.
// Placement picks the nearest node to a client known only by country, so for
// large countries a point in the populated area gives better decisions than
// an empty interior.
var overrides = map[string]point{
	"US": {37.42, -92.42, "mean centre of population (2020 census, Missouri), not the geographic centre"},
	"CA": {45.42, -75.70, "Ottawa, between the Toronto and Montréal metros; most Canadians live near the southern border"},
	"RU": {55.76, 37.62, "Moscow; most of the population lives in European Russia"},
	"CN": {30.59, 114.31, "Wuhan, central to the densely populated east; the geographic centre is in sparse Gansu/Qinghai"},
	"BR": {-23.55, -46.63, "São Paulo, in the populous south-east; the geographic centre is in Mato Grosso"},
	"AU": {-35.28, 149.13, "Canberra, between Sydney and Melbourne; the geographic centre is in the outback"},
	"ID": {-6.21, 106.85, "Jakarta on Java, where most Indonesians live; the DSPL point is on Borneo"},
	"AR": {-34.60, -58.38, "Buenos Aires, home to about a third of Argentinians; the DSPL point is in La Pampa"},
	"GL": {64.18, -51.72, "Nuuk; the DSPL point is on the ice sheet"},
	"SD": {15.50, 30.20, "Sudan after 2011; the DSPL centre predates South Sudan's independence"},
}

type isoEntry struct {
	Alpha2     string `json:"alpha_2"`
	Name       string `json:"name"`
	CommonName string `json:"common_name"`
}

func main() {
	isoPath := flag.String("iso", "/usr/share/iso-codes/json/iso_3166-1.json", "iso-codes ISO 3166-1 JSON file")
	coordsPath := flag.String("coords", "internal/gencountries/dspl_countries.csv", "DSPL countries CSV (code,lat,lon)")
	out := flag.String("o", "countries.go", "output Go file")
	flag.Parse()
	if err := run(*isoPath, *coordsPath, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gencountries:", err)
		os.Exit(1)
	}
}

func run(isoPath, coordsPath, out string) error {
	entries, err := readISO(isoPath)
	if err != nil {
		return err
	}
	coords, err := readCoords(coordsPath)
	if err != nil {
		return err
	}
	src, err := render(entries, coords)
	if err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

func readISO(path string) ([]isoEntry, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read iso-codes: %w", err)
	}
	var doc struct {
		Entries []isoEntry `json:"3166-1"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if len(doc.Entries) == 0 {
		return nil, fmt.Errorf("parse %s: no entries", path)
	}
	sort.Slice(doc.Entries, func(i, j int) bool { return doc.Entries[i].Alpha2 < doc.Entries[j].Alpha2 })
	return doc.Entries, nil
}

func readCoords(path string) (map[string]point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read coordinates: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 3
	m := make(map[string]point)
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if line == 1 {
			continue // header
		}
		lat, err1 := strconv.ParseFloat(rec[1], 64)
		lon, err2 := strconv.ParseFloat(rec[2], 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		m[rec[0]] = point{lat: lat, lon: lon}
	}
}

func render(entries []isoEntry, coords map[string]point) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`// Code generated by internal/gencountries; DO NOT EDIT.

package geo

// countries: every ISO 3166-1 alpha-2 code, sorted by code. Names are the
// English short names from Debian's iso-codes (its common name where it has
// one, e.g. "South Korea"). Points are country centres from Google's DSPL
// canonical country table (github.com/google/dspl, Copyright 2018 Google
// Inc., BSD 3-Clause licence); rows with a comment were supplied or moved to
// a populated area by internal/gencountries, which says why.
var countries = []Country{
`)
	for _, e := range entries {
		name := e.Name
		if e.CommonName != "" {
			name = e.CommonName
		}
		p, ok := coords[e.Alpha2]
		if s, found := supplements[e.Alpha2]; found {
			p, ok = s, true
		}
		if o, found := overrides[e.Alpha2]; found {
			p, ok = o, true
		}
		if !ok {
			return nil, fmt.Errorf("no coordinates for %s (%s)", e.Alpha2, name)
		}
		fmt.Fprintf(&b, "\t{%q, %q, %s, %s},", e.Alpha2, name, fmtCoord(p.lat), fmtCoord(p.lon))
		if p.why != "" {
			fmt.Fprintf(&b, " // %s", p.why)
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}

// fmtCoord rounds to four decimals (about 11 m), far finer than a country's
// representative point needs, to keep the table readable.
func fmtCoord(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e4)/1e4, 'f', -1, 64)
}
