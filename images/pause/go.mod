module cachedmodel.local/pause

go 1.22
