package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "control plane URL")
	meeting := fs.String("meeting", "", "one meeting (default: every meeting, per country)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	_ = fs.String("config", "", "config file of 'flag = value' lines")
	auth := readerFlags(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := auth.client(*server)
	if err != nil {
		return err
	}
	if *meeting == "" {
		rep, err := cl.Report(ctx)
		return printReport(stdout, *asJSON, rep, err, deploymentTable)
	}
	rep, err := cl.MeetingReport(ctx, *meeting)
	return printReport(stdout, *asJSON, rep, err, meetingTable)
}

// printReport prints a report the control plane answered, as JSON or as
// table prints it.
func printReport[R any](stdout io.Writer, asJSON bool, rep R, err error, table func(io.Writer, R)) error {
	if err != nil {
		return apiFailure(err)
	}
	if asJSON {
		return printIndented(stdout, rep)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	table(tw, rep)
	return tw.Flush()
}

func deploymentTable(tw io.Writer, rep api.DeploymentReport) {
	fmt.Fprintf(tw, "Traffic of %d meetings by the country of the node that carried it", rep.Meetings)
	if !rep.Computed.IsZero() {
		// The control plane reads every meeting at most once per
		// api.ReportMaxAge: say how fresh the figures are.
		fmt.Fprintf(tw, ", as of %s", rep.Computed.UTC().Format(time.RFC3339))
	}
	fmt.Fprint(tw, "\n\n")
	countryTable(tw, rep.Countries)
}

func meetingTable(tw io.Writer, rep api.MeetingReport) {
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
		if e.Kind == audit.KindNodeRefused { // by a participant's client, of the node it names
			fmt.Fprintf(tw, "  %s\t%s refused %s (%s)\t%s\n", e.Time.Format(time.TimeOnly), e.Participant, e.Node, e.NodeCountry, e.Reason)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", e.Time.Format(time.TimeOnly), e.Reason)
	}
	fmt.Fprintf(tw, "Migrations and disconnections: %d\n", len(rep.Migrations))
	for _, e := range rep.Migrations {
		fmt.Fprintf(tw, "  %s\t%s\t%s (%s)\t%s\n", e.Time.Format(time.TimeOnly), e.Participant, e.Node, e.NodeCountry, e.Reason)
	}
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

// apiFailure says why the control plane refused a request: its message and
// code, or the status of an answer that was not the API's.
func apiFailure(err error) error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return fmt.Errorf("reach the control plane: %w", err)
	}
	if ae.Code == "" {
		return fmt.Errorf("control plane: HTTP %d %s", ae.Status, ae.Message)
	}
	return fmt.Errorf("%s (%s)", ae.Message, ae.Code)
}

// printIndented writes v as the control plane itself writes its answers,
// so --json shows what the API sent.
func printIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
