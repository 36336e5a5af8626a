package geo

// regions: data-center regions, sorted by id.
var regions = []Region{
	{"ap-northeast-1", "Tokyo", "JP", 35.68, 139.69},
	{"eu-central-1", "Frankfurt", "DE", 50.11, 8.68},
	{"us-east-1", "N. Virginia", "US", 38.95, -77.45},
}
