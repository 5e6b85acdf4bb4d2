package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ckptfs/ckptfs/chain"
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
	LogReplayed bool `json:"log_replayed"`
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
	for i, l := range c.Links {
		links[i] = linkJSON{File: l.Path, Type: l.File.Type().String(), LocatorKey: l.LocatorKey, LocatorValue: l.LocatorValue, LogReplayed: l.File.Log.Replayed}
		if i > 0 {
			k := l.Linkage
			links[i].Linkage = &struct {
				Key      string `json:"key"`
				Expected string `json:"expected"`
				Actual   string `json:"actual"`
				OK       bool   `json:"ok"`
				Ignored  bool   `json:"ignored,omitempty"`
			}{k.Key, k.Expected.Braced(), k.Actual.Braced(), k.OK, k.Ignored}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"virtual_size": c.Size(), "depth": c.Depth(), "links": links})
	}
	fmt.Fprintf(stdout, "Chain of %d file(s), virtual size %s, leaf first:\n", c.Depth(), human(c.Size()))
	for i, l := range links {
		fmt.Fprintf(stdout, "%2d  %s  (%s)\n", i, l.File, l.Type)
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
			fmt.Fprintf(stdout, "      linkage %s %s = DataWriteGuid %s: %s\n", l.Linkage.Key, l.Linkage.Expected, l.Linkage.Actual, status)
		}
	}
	return nil
}
