package testcluster

import (
	"encoding/json"
	"testing"

	"github.com/oakmeet/oakmeet/api"
)

// APIError reads what the server writes for an api.Error, and refuses
// what is not JSON.
func TestAPIErrorReadsTheWireForm(t *testing.T) {
	data, err := json.Marshal(api.Errorf(503, "no_capacity_in_allowed_regions", "all %d allowed nodes are full", 3))
	if err != nil {
		t.Fatal(err)
	}
	var ae APIError
	if err := json.Unmarshal(data, &ae); err != nil {
		t.Fatal(err)
	}
	if ae.Code != "no_capacity_in_allowed_regions" || ae.Error != "all 3 allowed nodes are full" {
		t.Fatalf("decoded %+v from %s", ae, data)
	}
	if err := json.Unmarshal([]byte("<html>"), &ae); err == nil {
		t.Fatal("decoded a page that is not JSON")
	}
}
