package demo

import (
	"slices"
	"testing"

	"github.com/oakmeet/oakmeet/geo"
)

// Every demo node is somewhere the catalogue knows, ids are unique, and
// the region lies in the node's country: a placement test on these nodes
// tests the real catalogue.
func TestNodesAreInTheCatalogue(t *testing.T) {
	ids := map[string]bool{}
	for _, n := range Nodes() {
		if ids[n.ID] {
			t.Errorf("node id %s twice", n.ID)
		}
		ids[n.ID] = true
		if _, err := geo.ParseCountry(n.Country); err != nil {
			t.Errorf("%s: %v", n.ID, err)
		}
		r, err := geo.ParseRegion(n.Region)
		if err != nil {
			t.Errorf("%s: %v", n.ID, err)
		} else if r.Country != n.Country {
			t.Errorf("%s: region %s is in %s, not %s", n.ID, n.Region, r.Country, n.Country)
		}
	}
}

func TestPickAndCountries(t *testing.T) {
	got := Pick("us-iad", "de-fra", "us-pdx")
	if len(got) != 3 || got[0].ID != "us-iad" || got[1].Country != "DE" || got[2].Region != "us-west-2" {
		t.Fatalf("Pick: %+v", got)
	}
	if cs := Countries(got); !slices.Equal(cs, []string{"US", "DE"}) {
		t.Fatalf("Countries: %v", cs)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Pick of an unknown id did not panic")
		}
	}()
	Pick("xx-nowhere")
}
