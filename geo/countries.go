package geo

// countries: ISO 3166-1 alpha-2, sorted by code.
var countries = []Country{
	{"BR", "Brazil", -14.2, -51.9},
	{"CN", "China", 35.9, 104.2},
	{"DE", "Germany", 51.2, 10.4},
	{"IN", "India", 20.6, 79.0},
	{"JP", "Japan", 36.2, 138.3},
	{"KR", "South Korea", 35.9, 127.8},
	{"RU", "Russia", 61.5, 105.3},
	{"SG", "Singapore", 1.35, 103.8},
	{"US", "United States", 37.1, -95.7},
}
