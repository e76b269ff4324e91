package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
	"github.com/urfave/cli/v2"

	"github.com/ingot-build/ingot/internal/progress"
	"github.com/ingot-build/ingot/manifest"
	"github.com/ingot-build/ingot/provenance"
	"github.com/ingot-build/ingot/sign"
)

// verifyCommand is `ingot verify DIR --pubkey FILE`: the checks of sign.VerifyDir on a build's
// output directory. Exit 0 when every one holds; 1 when one fails, each problem on its own line
// of stderr; 2 for bad usage (no DIR, no readable public key, a DIR that is no build's output).
func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check a signed build: the signatures of its records, its SHA256SUMS, and that manifest, SBOM and outputs agree",
		Description: "DIR is a build's output directory. Checked with the minisign public key FILE: the signatures of\n" +
			"SHA256SUMS, manifest.json and the SBOM (and of every other FILE.minisig there); that every file\n" +
			"SHA256SUMS lists is there with its sha256; that every output, download and the inventory of the\n" +
			"manifest is in SHA256SUMS, and every output in the SPDX SBOM, with the same sha256.\n" +
			"Exit codes: 0 verified, 1 a check failed (each named on stderr), 2 bad usage. See docs/signing.md.",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pubkey", Required: true, Usage: "minisign public key `FILE` (as minisign -G writes it, NAME.pub)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{errors.New("name one output directory to verify")}
			}
			dir := c.Args().First()
			pub, err := sign.LoadPublicKey(c.String("pubkey"))
			if err != nil {
				return usageError{fmt.Errorf("--pubkey: %w", err)}
			}
			r, err := sign.VerifyDir(c.Context, dir, pub)
			if errors.Is(err, sign.ErrNotOutputDir) {
				return usageError{err}
			}
			if err != nil {
				return fmt.Errorf("verify %s: %w", dir, err)
			}
			prov, perr := verifyProvenance(c.Context, dir, pub)
			if perr != nil {
				r.Problems = append(r.Problems, perr)
			}
			if !r.OK() {
				for _, p := range r.Problems {
					fmt.Fprintf(c.App.ErrWriter, "ingot: verify: %v\n", p)
				}
				fmt.Fprintf(c.App.ErrWriter, "ingot: %s is NOT verified: %d problem(s)\n", dir, len(r.Problems))
				return errReported
			}
			if err := writeVerified(c, r); err != nil {
				return err
			}
			if prov != "" {
				fmt.Fprintf(c.App.Writer, "  provenance  %s\n", prov)
			} else {
				fmt.Fprintf(c.App.Writer, "  provenance  none in the directory\n")
			}
			return nil
		},
	}
}

// writeVerified prints what was checked: which signatures, how much was hashed, which records
// agree.
func writeVerified(c *cli.Context, r *sign.Report) error {
	w := c.App.Writer
	fmt.Fprintf(w, "%s: verified with key %s\n", r.Dir, r.KeyID)
	fmt.Fprintf(w, "  signatures  %s\n", strings.Join(r.Signed, ", "))
	fmt.Fprintf(w, "  SHA256SUMS  %d file(s), %s, each with its sha256\n", r.Summed, progress.Bytes(r.SummedBytes))
	listed := fmt.Sprintf("%d output(s), %d download(s)", r.Outputs, r.Downloads)
	if r.Inventory {
		listed += " and the file inventory"
	}
	fmt.Fprintf(w, "  manifest    %s, as SHA256SUMS lists them\n", listed)
	if r.SBOM != "" {
		fmt.Fprintf(w, "  SBOM        %s describes the %d output(s) with the same sha256\n", r.SBOM, r.Outputs)
	} else {
		fmt.Fprintf(w, "  SBOM        none in the directory\n")
	}
	return nil
}

// verifyProvenance checks the build's provenance, when DIR has one: its DSSE signature with the
// same key, and that its subjects are the manifest's outputs with their sha256. It returns what
// it verified, or "" when there is none.
func verifyProvenance(ctx context.Context, dir string, pub minisign.PublicKey) (string, error) {
	env, err := os.ReadFile(filepath.Join(dir, provenance.FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", provenance.FileName, err)
	}
	key, id, err := provenance.MinisignKey(pub)
	if err != nil {
		return "", err
	}
	st, err := provenance.Verify(ctx, env, key, id)
	if err != nil {
		return "", fmt.Errorf("%s: %w", provenance.FileName, err)
	}
	m, err := manifest.Read(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return "", err
	}
	want := map[string]string{}
	for _, o := range m.Outputs {
		want[o.File] = o.SHA256
	}
	got := map[string]string{}
	for _, sub := range st.Subject {
		got[sub.Name] = sub.Digest["sha256"]
	}
	if !maps.Equal(want, got) {
		return "", fmt.Errorf("%s: its subjects %v are not the manifest's outputs %v", provenance.FileName, got, want)
	}
	if st.Predicate.RunDetails.Metadata.InvocationID != m.BuildID {
		return "", fmt.Errorf("%s: it is of build %s, the manifest of build %s", provenance.FileName, st.Predicate.RunDetails.Metadata.InvocationID, m.BuildID)
	}
	return fmt.Sprintf("%s: an SLSA v1 statement of build %s, signed by the same key, naming the %d output(s) with their sha256", provenance.FileName, m.BuildID, len(got)), nil
}
