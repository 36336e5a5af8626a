package policy

import "github.com/oakmeet/oakmeet/geo"

// countrySet is a set of ISO 3166-1 alpha-2 codes as one bit per possible
// two-letter code. A fixed-size array keeps Effective cheap to copy and
// compare, and makes a membership test a shift and a mask, which matters
// because placement asks it for every node location on every join.
type countrySet [(26*26 + 63) / 64]uint64

// countryBit maps a two-letter ASCII code (either case) to its bit. Anything
// else has no bit, which is how unknown input fails closed.
func countryBit(code string) (int, bool) {
	if len(code) != 2 {
		return 0, false
	}
	a, okA := letter(code[0])
	b, okB := letter(code[1])
	if !okA || !okB {
		return 0, false
	}
	return a*26 + b, true
}

func letter(c byte) (int, bool) {
	switch {
	case 'A' <= c && c <= 'Z':
		return int(c - 'A'), true
	case 'a' <= c && c <= 'z':
		return int(c - 'a'), true
	}
	return 0, false
}

func (s *countrySet) add(code string) {
	if i, ok := countryBit(code); ok {
		s[i/64] |= 1 << (i % 64)
	}
}

func (s *countrySet) remove(code string) {
	if i, ok := countryBit(code); ok {
		s[i/64] &^= 1 << (i % 64)
	}
}

func (s *countrySet) has(code string) bool {
	i, ok := countryBit(code)
	return ok && s[i/64]&(1<<(i%64)) != 0
}

// codes lists the members in sorted order; bit order is alphabetical order.
func (s *countrySet) codes() []string {
	out := []string{}
	for i := range 26 * 26 {
		if s[i/64]&(1<<(i%64)) != 0 {
			out = append(out, string([]byte{byte('A' + i/26), byte('A' + i%26)}))
		}
	}
	return out
}

// catalogue is every country geo knows; it never changes after start-up.
var catalogue = func() countrySet {
	var s countrySet
	for _, c := range geo.Countries() {
		s.add(c.Code)
	}
	return s
}()
