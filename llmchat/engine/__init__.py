"""Prompt ids → TokenEvent … Finished: the decode loop (`generate`), sampling (`sampling`), stop
strings (`stops`), the events (`events`) and their one dict form (`codec`), and the seam every
face uses (`source.ModelSource`, with `LocalModel` in process). The engine never prints."""
