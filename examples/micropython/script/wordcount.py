# Counts the words of /input/text.txt and writes them, most frequent first,
# to /out/counts.txt; prints a one-line summary on stdout.
counts = {}
with open("/input/text.txt") as f:
    for line in f:
        for word in line.split():
            word = word.strip(".,;:!?\"'()").lower()
            if word:
                counts[word] = counts.get(word, 0) + 1

ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
with open("/out/counts.txt", "w") as out:
    for word, n in ranked:
        out.write("%d %s\n" % (n, word))

print("%d words, %d distinct" % (sum(counts.values()), len(counts)))
