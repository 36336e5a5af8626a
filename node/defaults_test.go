package node

import (
	"regexp"
	"testing"
)

func TestDefaultID(t *testing.T) {
	if id := DefaultID("DE", "eu-central-1"); id != "de-eu-central-1" {
		t.Fatalf("with a region: %q", id)
	}
	shape := regexp.MustCompile(`^jp-[a-km-np-z2-9]{4}$`)
	seen := map[string]bool{}
	for range 20 {
		id := DefaultID("JP", "")
		if !shape.MatchString(id) {
			t.Fatalf("without a region: %q", id)
		}
		seen[id] = true
	}
	if len(seen) < 15 { // 32^4 ids: twenty draws all but never repeat
		t.Fatalf("only %d distinct ids in 20", len(seen))
	}
}

func TestDefaultMaxBitrateFollowsTheCores(t *testing.T) {
	for _, tc := range []struct {
		cores int
		want  int64
	}{{0, 300_000_000}, {1, 300_000_000}, {2, 600_000_000}, {16, 4_800_000_000}} {
		if got := DefaultMaxBitrate(tc.cores); got != tc.want {
			t.Errorf("%d cores: %d bit/s, want %d", tc.cores, got, tc.want)
		}
	}
}
