"""Tool families: each module declares its tools (`ToolSpec`) next to their inputs, outputs and handlers.
The registry imports every module here and collects the declarations; nothing else lists a tool."""
