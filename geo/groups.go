package geo

// groups: named sets of countries usable in a policy, members sorted. Names
// are chosen so they can never be mistaken for an ISO 3166-1 alpha-2 code:
// "EU" is only "exceptionally reserved" by ISO, never assigned, and the
// others are longer than two letters. Membership as of 2025.
var groups = map[string][]string{
	// European Union, 27 member states since the UK left in 2020.
	"EU": {
		"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
		"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
	},
	// European Economic Area: the EU plus Iceland, Liechtenstein and Norway,
	// the area the GDPR applies to.
	"EEA": {
		"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
		"IE", "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE",
		"SI", "SK",
	},
	// European Free Trade Association.
	"EFTA": {"CH", "IS", "LI", "NO"},
	// The UKUSA intelligence-sharing alliance, a common block-list entry.
	"FIVE_EYES": {"AU", "CA", "GB", "NZ", "US"},
}
