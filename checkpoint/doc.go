// Package checkpoint turns disk files and VM folders into checkpoints:
// it discovers chains and their branches, names each point (from Hyper-V's
// configuration where there is one), and computes the tree a mount shows
// as plain data (Node).
package checkpoint
