"""What a page becomes before any model runs: pages, page sets, workloads, shape keys and selections."""
