package geo

// groups: named sets of countries usable in a policy.
var groups = map[string][]string{
	"EU": {"DE"},
}
