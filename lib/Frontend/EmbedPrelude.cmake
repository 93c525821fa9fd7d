# Writes the prelude source IN as a C++ raw string literal into OUT.
file(READ ${IN} ATTNC_PRELUDE_TEXT)
file(WRITE ${OUT} "R\"attnprelude(${ATTNC_PRELUDE_TEXT})attnprelude\"\n")
