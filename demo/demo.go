// Package demo is the deployment `oakmeet serve --demo` runs on one
// machine: its table of media nodes, on six continents so that typical
// policies have something to block. The in-process test clusters take
// their nodes from the same table, so a test's node is a demo's node.
package demo

import "fmt"

// Node is one in-process media node of the demo.
type Node struct {
	ID, Country, Region string
}

// Nodes returns the demo's media nodes, in the order `serve --demo
// --nodes N` starts the first N of them.
func Nodes() []Node {
	return []Node{
		{"de-fra", "DE", "eu-central-1"},
		{"gb-lon", "GB", "eu-west-2"},
		{"us-iad", "US", "us-east-1"},
		{"us-pdx", "US", "us-west-2"},
		{"br-gru", "BR", "sa-east-1"},
		{"jp-tyo", "JP", "ap-northeast-1"},
		{"sg-sin", "SG", "ap-southeast-1"},
		{"in-bom", "IN", "ap-south-1"},
		{"au-syd", "AU", "ap-southeast-2"},
		{"za-cpt", "ZA", "af-south-1"},
		{"cn-pek", "CN", "cn-north-1"},
		{"ru-mow", "RU", "ru-central1"},
	}
}

// Pick returns the demo nodes with the given ids, in the order given. An
// id the table does not hold is a programming error and panics.
func Pick(ids ...string) []Node {
	all := Nodes()
	out := make([]Node, 0, len(ids))
	for _, id := range ids {
		found := false
		for _, n := range all {
			if n.ID == id {
				out = append(out, n)
				found = true
				break
			}
		}
		if !found {
			panic(fmt.Sprintf("demo: no node %q", id))
		}
	}
	return out
}

// Countries lists the countries of nodes, each once, in the order they
// first appear.
func Countries(nodes []Node) []string {
	var cs []string
	seen := map[string]bool{}
	for _, n := range nodes {
		if !seen[n.Country] {
			seen[n.Country] = true
			cs = append(cs, n.Country)
		}
	}
	return cs
}
