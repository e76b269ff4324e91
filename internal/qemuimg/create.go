package qemuimg

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
)

// Create makes a blank image of size bytes at path.
func Create(ctx context.Context, path, format string, size int64) error {
	if err := needFormat("create "+path, format); err != nil {
		return err
	}
	if _, err := output(ctx, "create", "-q", "-f", format, path, strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("create %s disk %s: %w", format, path, err)
	}
	return nil
}

// CreateOverlay makes a qcow2 overlay at path on base, an image in baseFormat that it never
// modifies, with a guest disk of size bytes (at least the base's). The overlay's header names
// base by its absolute path, so the overlay works from any directory, and records baseFormat,
// so that no later open of the chain probes the base.
func CreateOverlay(ctx context.Context, path, base, baseFormat string, size int64) error {
	what := fmt.Sprintf("create an overlay %s on %s", path, base)
	if err := needFormat(what, baseFormat); err != nil {
		return err
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := output(ctx, "create", "-q", "-f", "qcow2", "-b", abs, "-F", baseFormat, path, strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
