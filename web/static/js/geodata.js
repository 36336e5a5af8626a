// The country groups and the region→country map of package geo, shipped
// with the app so the host's rules check (hostcontrol.js) uses no data from
// the control plane. web/geodata_test.go proves these equal geo's catalogue.

// GROUPS: group name -> member country codes (sorted).
export const GROUPS = Object.freeze({
  EEA: Object.freeze(["AT","BE","BG","CY","CZ","DE","DK","EE","ES","FI","FR","GR","HR","HU","IE","IS","IT","LI","LT","LU","LV","MT","NL","NO","PL","PT","RO","SE","SI","SK"]),
  EFTA: Object.freeze(["CH","IS","LI","NO"]),
  EU: Object.freeze(["AT","BE","BG","CY","CZ","DE","DK","EE","ES","FI","FR","GR","HR","HU","IE","IT","LT","LU","LV","MT","NL","PL","PT","RO","SE","SI","SK"]),
  FIVE_EYES: Object.freeze(["AU","CA","GB","NZ","US"]),
});

// REGION_COUNTRY: region id (lower case) -> its country code.
export const REGION_COUNTRY = Object.freeze({
  'af-south-1': 'ZA',
  'ap-east-1': 'HK',
  'ap-northeast-1': 'JP',
  'ap-northeast-2': 'KR',
  'ap-northeast-3': 'JP',
  'ap-south-1': 'IN',
  'ap-south-2': 'IN',
  'ap-southeast-1': 'SG',
  'ap-southeast-2': 'AU',
  'ap-southeast-3': 'ID',
  'ap-southeast-4': 'AU',
  'asia-east1': 'TW',
  'ca-central-1': 'CA',
  'ca-west-1': 'CA',
  'cn-north-1': 'CN',
  'cn-northwest-1': 'CN',
  'eu-central-1': 'DE',
  'eu-central-2': 'CH',
  'eu-north-1': 'SE',
  'eu-south-1': 'IT',
  'eu-south-2': 'ES',
  'eu-west-1': 'IE',
  'eu-west-2': 'GB',
  'eu-west-3': 'FR',
  'europe-central2': 'PL',
  'europe-north1': 'FI',
  'europe-west4': 'NL',
  'il-central-1': 'IL',
  'me-central-1': 'AE',
  'me-central2': 'SA',
  'me-south-1': 'BH',
  'mx-central-1': 'MX',
  'newzealandnorth': 'NZ',
  'norwayeast': 'NO',
  'qatarcentral': 'QA',
  'ru-central1': 'RU',
  'sa-east-1': 'BR',
  'southamerica-west1': 'CL',
  'us-east-1': 'US',
  'us-east-2': 'US',
  'us-west-1': 'US',
  'us-west-2': 'US',
});
