package plugins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// newest returns the newest regular file in a plugin's folder: the build
// to run. Files starting with "." (partial copies) are skipped.
func newest(dir string) (path string, mod time.Time, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", time.Time{}, err
	}
	for _, e := range entries {
		if e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if info.ModTime().After(mod) || info.ModTime().Equal(mod) && filepath.Join(dir, e.Name()) > path {
			path, mod = filepath.Join(dir, e.Name()), info.ModTime()
		}
	}
	if path == "" {
		return "", time.Time{}, fmt.Errorf("no plugin binary in %s", dir)
	}
	return path, mod, nil
}

// pluginDirs lists Dir's plugin folders.
func (h *Host) pluginDirs() ([]string, error) {
	if h.cfg.Dir == "" {
		return nil, errors.New("plugins: no plugin directory configured")
	}
	entries, err := os.ReadDir(h.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name()[0] != '.' {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// LoadDir loads every plugin in Dir: the newest build in each folder,
// named after the folder. It loads what it can and returns the errors of
// the rest.
func (h *Host) LoadDir() error {
	names, err := h.pluginDirs()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		path, _, err := newest(filepath.Join(h.cfg.Dir, name))
		if err == nil {
			_, err = h.Swap(name, path)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Watch swaps a plugin when a newer build appears in its folder (or a
// folder appears), checking every interval until ctx ends. A refused build
// is not retried until another appears; a rollback is not undone.
func (h *Host) Watch(ctx context.Context, every time.Duration) error {
	if h.cfg.Dir == "" {
		return errors.New("plugins: no plugin directory to watch")
	}
	type build struct {
		path string
		mod  time.Time
	}
	seen := map[string]build{}
	for _, info := range h.List() {
		if st, err := os.Stat(info.Path); err == nil {
			seen[info.Name] = build{info.Path, st.ModTime()}
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		names, err := h.pluginDirs()
		if err != nil {
			continue
		}
		for _, name := range names {
			path, mod, err := newest(filepath.Join(h.cfg.Dir, name))
			if err != nil || seen[name] == (build{path, mod}) {
				continue
			}
			seen[name] = build{path, mod}
			// A build that is still being written fails its checks and
			// waits for the next change; deploy by copy and rename.
			h.log.Info("new plugin build; swapping", "plugin", name, "path", path)
			h.Swap(name, path) // logs the outcome
		}
	}
}
