"""Import paths of the original design, kept working as thin re-exports."""
