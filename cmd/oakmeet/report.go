package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/oakmeet/oakmeet/api"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "control plane URL")
	meeting := fs.String("meeting", "", "one meeting (default: every meeting, per country)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	_ = fs.String("config", "", "config file of 'flag = value' lines")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	path := "/api/report"
	if *meeting != "" {
		path = "/api/meetings/" + url.PathEscape(*meeting) + "/report"
	}
	body, err := apiGet(ctx, *server, path, 30*time.Second, 64<<20)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	defer tw.Flush()
	if *meeting == "" {
		var rep api.DeploymentReport
		if err := json.Unmarshal(body, &rep); err != nil {
			return fmt.Errorf("read report: %w", err)
		}
		fmt.Fprintf(tw, "Traffic of %d meetings by the country of the node that carried it\n\n", rep.Meetings)
		countryTable(tw, rep.Countries)
		return nil
	}
	var rep api.MeetingReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("read report: %w", err)
	}
	fmt.Fprintf(tw, "Meeting %s %q, created %s, %d participants over time\n\n", rep.Meeting, rep.Title, rep.Created.Format(time.RFC3339), rep.Participants)
	fmt.Fprintln(tw, "Policy in force")
	for _, p := range rep.Policies {
		fmt.Fprintf(tw, "  since %s\tblocked %s\tregions %s\tonly %s\n", p.At.Format(time.TimeOnly), list(p.Effective.BlockedCountries), list(p.Effective.BlockedRegions), list(p.Effective.AllowedCountries))
	}
	fmt.Fprintln(tw, "\nNodes that carried the meeting")
	fmt.Fprintln(tw, "  NODE\tCOUNTRY\tREGION\tPARTICIPANTS\tPARTICIPANT-MIN\tBYTES\tFROM\tUNTIL\tLAST TRAFFIC")
	for _, n := range rep.Nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%.1f\t%d\t%s\t%s\t%s\n", n.Node, n.Country, n.Region, n.Participants, n.ParticipantMinutes, n.Bytes, clock(n.From, "-"), clock(n.Until, "now"), clock(n.LastTraffic, "-"))
	}
	fmt.Fprintln(tw, "\nBy country")
	countryTable(tw, rep.Countries)
	fmt.Fprintf(tw, "\nRefusals: %d\n", len(rep.Refusals))
	for _, e := range rep.Refusals {
		fmt.Fprintf(tw, "  %s\t%s\n", e.Time.Format(time.TimeOnly), e.Reason)
	}
	fmt.Fprintf(tw, "Migrations and disconnections: %d\n", len(rep.Migrations))
	for _, e := range rep.Migrations {
		fmt.Fprintf(tw, "  %s\t%s\t%s (%s)\t%s\n", e.Time.Format(time.TimeOnly), e.Participant, e.Node, e.NodeCountry, e.Reason)
	}
	return nil
}

func countryTable(w io.Writer, cs []api.CountryUsage) {
	fmt.Fprintln(w, "  COUNTRY\tSHARE\tBYTES\tPARTICIPANT-MIN\tNODES\tLAST TRAFFIC")
	for _, c := range cs {
		fmt.Fprintf(w, "  %s\t%.1f%%\t%d\t%.1f\t%s\t%s\n", c.Country, 100*c.Share, c.Bytes, c.ParticipantMinutes, strings.Join(c.Nodes, ","), clock(c.LastTraffic, "-"))
	}
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ",")
}

func clock(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Format(time.TimeOnly)
}

// apiGet fetches a control-plane path within timeout, reading at most
// limit bytes, and turns API errors into their message and code.
func apiGet(ctx context.Context, server, path string, timeout time.Duration, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := strings.TrimRight(server, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the control plane: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Code string }
		if json.Unmarshal(body, &e) == nil && e.Code != "" {
			return nil, fmt.Errorf("%s: %s (%s)", u, e.Error, e.Code)
		}
		return nil, fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return body, nil
}
