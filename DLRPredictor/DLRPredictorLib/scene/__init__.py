"""The only MRML user: nodes, tables, heatmap overlay, scene files."""
