package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ckptfs/ckptfs/chain"
	"github.com/ckptfs/ckptfs/disk"
)

func init() {
	register("chain", command{
		summary: "show the chain from FILE to its base: how each parent was found and its linkage check",
		usage:   "FILE [--search-path DIR]... [--ignore-linkage] [--json]",
		run:     runChain,
	})
}

type linkJSON struct {
	File         string `json:"file"`
	Format       string `json:"format"`
	Type         string `json:"type"`
	LocatorKey   string `json:"locator_key,omitempty"`
	LocatorValue string `json:"locator_value,omitempty"`
	Linkage      *struct {
		Key      string `json:"key"`
		Expected string `json:"expected"`
		Actual   string `json:"actual"`
		OK       bool   `json:"ok"`
		Ignored  bool   `json:"ignored,omitempty"`
	} `json:"linkage,omitempty"`
	LogReplayed bool     `json:"log_replayed"`
	Warnings    []string `json:"warnings,omitempty"`
}

func runChain(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chain", stderr)
	var cf chainFlags
	cf.add(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, 1, 1); err != nil {
		return err
	}
	c, err := chain.Open(fs.Arg(0), chain.Options{SearchPaths: cf.searchPaths, IgnoreLinkage: cf.ignoreLinkage})
	if err != nil {
		return err
	}
	defer c.Close()
	links := make([]linkJSON, len(c.Links))
	actualKey := make([]string, len(c.Links))
	for i, l := range c.Links {
		links[i] = linkJSON{File: l.Path, Format: l.File.Format(), Type: l.File.Type().String(), LocatorKey: l.LocatorKey, LocatorValue: l.LocatorValue, Warnings: l.Warnings}
		if f, ok := l.File.(*disk.File); ok {
			links[i].LogReplayed = f.Log.Replayed
		}
		if i > 0 {
			k := l.Linkage
			links[i].Linkage = &struct {
				Key      string `json:"key"`
				Expected string `json:"expected"`
				Actual   string `json:"actual"`
				OK       bool   `json:"ok"`
				Ignored  bool   `json:"ignored,omitempty"`
			}{k.Key, k.Expected.Braced(), k.Actual.Braced(), k.OK, k.Ignored}
			actualKey[i] = k.ActualKey
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"virtual_size": c.Size(), "depth": c.Depth(), "links": links})
	}
	fmt.Fprintf(stdout, "Chain of %d file(s), virtual size %s, leaf first:\n", c.Depth(), human(c.Size()))
	for i, l := range links {
		fmt.Fprintf(stdout, "%2d  %s  (%s %s)\n", i, l.File, l.Format, l.Type)
		if l.LogReplayed {
			fmt.Fprintf(stdout, "      log replayed in memory\n")
		}
		if l.Linkage != nil {
			fmt.Fprintf(stdout, "      found through %s = %s\n", l.LocatorKey, l.LocatorValue)
			status := "ok"
			if !l.Linkage.OK {
				status = "MISMATCH"
				if l.Linkage.Ignored {
					status = "MISMATCH (ignored by --ignore-linkage)"
				}
			}
			fmt.Fprintf(stdout, "      linkage %s %s = %s %s: %s\n", l.Linkage.Key, l.Linkage.Expected, actualKey[i], l.Linkage.Actual, status)
		}
		for _, w := range l.Warnings {
			fmt.Fprintf(stdout, "      warning: %s\n", w)
		}
	}
	return nil
}
