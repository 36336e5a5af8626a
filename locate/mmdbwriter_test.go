package locate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"
)

// This file is a minimal writer for the MaxMind DB format (version 2.0,
// https://maxmind.github.io/MaxMind-DB/), enough to build small country
// databases in tests without shipping a binary fixture or a network fetch:
// an IPv6 search tree with 24-bit records (IPv4 networks live under ::/96,
// where readers look for them), a data section of maps and strings, and the
// metadata map.

// mmdbRecord is the data stored for one network. Values may be strings,
// unsigned or non-negative ints, maps and []any; anything else is an error.
type mmdbRecord map[string]any

// writeMMDB writes a database mapping each network to its record and returns
// the file's path.
func writeMMDB(t testing.TB, networks map[string]mmdbRecord) string {
	t.Helper()
	raw, err := buildMMDB(networks)
	if err != nil {
		t.Fatalf("build mmdb: %v", err)
	}
	path := filepath.Join(t.TempDir(), "country.mmdb")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// countryDB is the usual shape: network -> country.iso_code.
func countryDB(t testing.TB, networks map[string]string) string {
	t.Helper()
	recs := make(map[string]mmdbRecord, len(networks))
	for n, code := range networks {
		recs[n] = mmdbRecord{"country": map[string]any{"iso_code": code}}
	}
	return writeMMDB(t, recs)
}

const (
	mmdbRecordBits = 24
	mmdbMaxRecord  = 1<<mmdbRecordBits - 1
)

type recKind uint8

const (
	recEmpty recKind = iota
	recNode
	recData
)

type treeRecord struct {
	kind recKind
	val  int // node index or data offset
}

func buildMMDB(networks map[string]mmdbRecord) ([]byte, error) {
	// Insert shorter prefixes first so a more specific network can split
	// the record of the one containing it.
	type entry struct {
		bits   [16]byte
		length int
		rec    mmdbRecord
	}
	var entries []entry
	for s, rec := range networks {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		p = p.Masked()
		e := entry{bits: p.Addr().As16(), length: p.Bits(), rec: rec}
		if p.Addr().Is4() {
			// IPv4 networks live under ::/96, not under ::ffff:0:0/96.
			e.length += 96
			e.bits = [16]byte{}
			v4 := p.Addr().As4()
			copy(e.bits[12:], v4[:])
		}
		if e.length == 0 {
			return nil, fmt.Errorf("network %s: a zero-length prefix is not supported", s)
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].length < entries[j].length })

	var data bytes.Buffer
	nodes := [][2]treeRecord{{}}
	for _, e := range entries {
		off := data.Len()
		if err := encodeValue(&data, map[string]any(e.rec)); err != nil {
			return nil, err
		}
		cur := 0
		for depth := 0; depth < e.length; depth++ {
			bit := e.bits[depth/8] >> (7 - depth%8) & 1
			if depth == e.length-1 {
				nodes[cur][bit] = treeRecord{kind: recData, val: off}
				break
			}
			r := nodes[cur][bit]
			switch r.kind {
			case recNode:
				cur = r.val
				continue
			case recData:
				// Push the containing network's data down both sides.
				nodes = append(nodes, [2]treeRecord{r, r})
			default:
				nodes = append(nodes, [2]treeRecord{})
			}
			next := len(nodes) - 1
			nodes[cur][bit] = treeRecord{kind: recNode, val: next}
			cur = next
		}
	}

	nodeCount := len(nodes)
	var out bytes.Buffer
	for _, n := range nodes {
		for _, r := range n {
			v := nodeCount // empty
			switch r.kind {
			case recNode:
				v = r.val
			case recData:
				v = nodeCount + 16 + r.val
			}
			if v > mmdbMaxRecord {
				return nil, fmt.Errorf("record value %d does not fit %d bits", v, mmdbRecordBits)
			}
			out.Write([]byte{byte(v >> 16), byte(v >> 8), byte(v)})
		}
	}
	out.Write(make([]byte, 16)) // data section separator
	out.Write(data.Bytes())
	out.WriteString("\xAB\xCD\xEFMaxMind.com")
	meta := map[string]any{
		"binary_format_major_version": uint16(2),
		"binary_format_minor_version": uint16(0),
		"build_epoch":                 uint64(1_700_000_000),
		"database_type":               "oakmeet-Test-Country",
		"description":                 map[string]any{"en": "oakmeet test database"},
		"ip_version":                  uint16(6),
		"languages":                   []any{"en"},
		"node_count":                  uint32(nodeCount),
		"record_size":                 uint16(mmdbRecordBits),
	}
	if err := encodeValue(&out, meta); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Data section type numbers from the specification.
const (
	typeString = 2
	typeUint16 = 5
	typeUint32 = 6
	typeMap    = 7
	typeUint64 = 9
	typeArray  = 11
)

func encodeValue(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case string:
		writeControl(b, typeString, len(v))
		b.WriteString(v)
	case uint16:
		writeUint(b, typeUint16, uint64(v))
	case uint32:
		writeUint(b, typeUint32, uint64(v))
	case uint64:
		writeUint(b, typeUint64, v)
	case int:
		if v < 0 {
			return fmt.Errorf("mmdb writer: negative int %d", v)
		}
		writeUint(b, typeUint32, uint64(v))
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		writeControl(b, typeMap, len(keys))
		for _, k := range keys {
			if err := encodeValue(b, k); err != nil {
				return err
			}
			if err := encodeValue(b, v[k]); err != nil {
				return err
			}
		}
	case []any:
		writeControl(b, typeArray, len(v))
		for _, e := range v {
			if err := encodeValue(b, e); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("mmdb writer: unsupported type %T", v)
	}
	return nil
}

func writeUint(b *bytes.Buffer, typ int, v uint64) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	n := 0
	for n < 8 && buf[n] == 0 {
		n++
	}
	writeControl(b, typ, 8-n)
	b.Write(buf[n:])
}

// writeControl writes a field's control byte(s): three type bits and five
// size bits, an extended-type byte for types above 7, then any size bytes.
func writeControl(b *bytes.Buffer, typ, size int) {
	first := byte(0)
	if typ <= 7 {
		first = byte(typ) << 5
	}
	var extra []byte
	switch {
	case size < 29:
		first |= byte(size)
	case size < 29+256:
		first |= 29
		extra = []byte{byte(size - 29)}
	case size < 285+65536:
		first |= 30
		s := size - 285
		extra = []byte{byte(s >> 8), byte(s)}
	default:
		first |= 31
		s := size - 65821
		extra = []byte{byte(s >> 16), byte(s >> 8), byte(s)}
	}
	b.WriteByte(first)
	if typ > 7 {
		b.WriteByte(byte(typ - 7))
	}
	b.Write(extra)
}

// TestMMDBWriterReadsBack checks the writer against the reader the Locator
// uses, including nested networks and IPv6, so GeoIP tests rest on a
// database the real reader accepts.
func TestMMDBWriterReadsBack(t *testing.T) {
	path := writeMMDB(t, map[string]mmdbRecord{
		"81.2.69.0/24":   {"country": map[string]any{"iso_code": "GB"}},
		"81.2.69.128/26": {"country": map[string]any{"iso_code": "IE"}},
		"2001:db8::/32":  {"country": map[string]any{"iso_code": "NL"}},
		"203.0.113.0/24": {"registered_country": map[string]any{"iso_code": "AU"}},
		"198.51.100.0/24": {"country": map[string]any{
			"iso_code": "A long string that needs an extra size byte to encode it, 0123456789",
		}},
	})
	db, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	tests := []struct {
		ip, path, want string
	}{
		{"81.2.69.1", "country", "GB"},
		{"81.2.69.129", "country", "IE"},
		{"81.2.69.255", "country", "GB"},
		{"2001:db8::1", "country", "NL"},
		{"203.0.113.9", "registered_country", "AU"},
		{"198.51.100.1", "country", "A long string that needs an extra size byte to encode it, 0123456789"},
		{"81.2.70.1", "country", ""},
		{"2001:db9::1", "country", ""},
	}
	for _, tt := range tests {
		var got string
		if err := db.Lookup(netip.MustParseAddr(tt.ip)).DecodePath(&got, tt.path, "iso_code"); err != nil {
			t.Errorf("%s: %v", tt.ip, err)
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.ip, got, tt.want)
		}
	}
}
