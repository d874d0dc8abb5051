"""Synthetic training data for the lfmd default router model.

Pure Python (no torch, no tokenizers) so it can be tested anywhere:
    python3 tools/train_router/data.py --n 2000 --show 20

Everything is generated from templates and vocabulary lists with a seeded
random.Random, so the same seed gives the same data.  Each example is a dict
    {"system": str or "", "user": str, "assistant": str, "kind": str}
kind is "route:<name>" for routing over the default routes, "cls" for other
classification sets, "chat" for question/answer and instruction pairs.
"""
import random

# ---------------------------------------------------------------------------
# Routing prompt (the exact format lfmd's /v1/route must build; see models/README.md)
# ---------------------------------------------------------------------------
ROUTES = ["code", "math", "creative", "analysis", "chat"]
ROUTE_DESC = {
    "code": "writing, reading or debugging programs",
    "math": "calculation, equations, units, statistics",
    "creative": "stories, poems, slogans, jokes",
    "analysis": "research, comparisons, summarising documents, planning",
    "chat": "greetings, small talk, short everyday questions",
}
ROUTE_HEADER = "Classify the request into one of these routes:"
ROUTE_FOOTER = "Answer with the route name only."


def routing_system_prompt(routes):
    """routes: list of (name, description-or-empty). One line per route."""
    lines = [ROUTE_HEADER]
    for name, desc in routes:
        lines.append(f"{name}: {desc}" if desc else name)
    lines.append(ROUTE_FOOTER)
    return "\n".join(lines)


DEFAULT_ROUTING_SYSTEM = routing_system_prompt([(r, ROUTE_DESC[r]) for r in ROUTES])

# alternative names / descriptions for the default classes (teaches the model to
# read the route list instead of memorising five names)
ALIASES = {
    "code": ["programming", "coding", "software", "dev", "developer", "code_helper", "programmer"],
    "math": ["maths", "calculator", "numbers", "arithmetic", "math_solver", "calc"],
    "creative": ["writing", "creative_writing", "storyteller", "poet", "fun", "writer"],
    "analysis": ["research", "analyst", "reports", "planning", "reasoning", "researcher"],
    "chat": ["smalltalk", "general", "conversation", "casual", "chitchat", "talk"],
}
ALT_DESC = {
    "code": ["software development and debugging", "programming questions and code review",
             "code in any programming language", "scripts, bugs, programming tools"],
    "math": ["arithmetic, algebra, calculus, conversions", "numbers, formulas and word problems",
             "math problems and unit conversion", "calculations and statistics"],
    "creative": ["creative writing such as stories and poems", "fiction, poetry, jokes and slogans",
                 "stories, songs, names and taglines", "imaginative writing"],
    "analysis": ["in-depth analysis, research and planning", "compare options, summarize, plan",
                 "reports, summaries, strategy and evaluation", "research and decision support"],
    "chat": ["casual conversation and simple questions", "small talk and everyday help",
             "greetings, thanks and chit-chat", "friendly conversation"],
}

# ---------------------------------------------------------------------------
# shared wrappers (applied to every route, so politeness is never a cue)
# ---------------------------------------------------------------------------
# prefixes for imperative requests ("write ...", "fix ...") and for questions ("what ...", "how ...")
IMP_PREFIXES = ["", "", "", "", "please ", "can you ", "could you ", "hey, ", "I need you to ", "quick question: ",
                "help me ", "I'd like you to ", "would you ", "pls ", "ok so ", "hi, ", "hello! ", "yo ",
                "can u ", "so, ", "excuse me, ", "urgent: ", "one more thing: ", "hey assistant, ",
                "I want you to ", "Would you mind helping: ", "task: ", "next, ", "now "]
Q_PREFIXES = ["", "", "", "", "quick question: ", "hey, ", "hi, ", "hello! ", "so ", "ok so ", "question: ",
              "I was wondering, ", "excuse me, ", "one more thing: ", "hey assistant, ", "do you know ",
              "can you tell me ", "any idea "]
SUFFIXES = ["", "", "", "", "?", ".", "!", " please", " thanks", " thank you", " for me", " asap",
            " if you can", " :)", "??", " quickly", " real quick", " when you get a chance", " please and thanks"]
Q_WORDS = ("what", "what's", "how", "why", "is", "which", "where", "when", "who", "does", "do", "can", "should",
           "are", "find", "i", "my", "if", "a", "an", "the")


def wrap(rng, core):
    first = core.split(" ")[0].lower()
    question = first in Q_WORDS
    p = rng.choice(Q_PREFIXES if question else IMP_PREFIXES)
    s = rng.choice(SUFFIXES)
    if question and s in ("", ".", "!") and rng.random() < 0.6:
        s = "?"
    text = p + core + s
    r = rng.random()
    if r < 0.45:
        text = text[:1].upper() + text[1:]
    elif r < 0.55:
        text = text.lower()
    return text


def pick(rng, xs):
    return xs[rng.randrange(len(xs))]


# ---------------------------------------------------------------------------
# code
# ---------------------------------------------------------------------------
LANGS = ["Python", "JavaScript", "TypeScript", "Java", "C", "C++", "C#", "Go", "Rust", "Ruby", "PHP", "Swift",
         "Kotlin", "Scala", "Haskell", "Lua", "Perl", "R", "Julia", "Bash", "shell", "PowerShell", "SQL", "HTML",
         "CSS", "Dart", "Elixir", "Zig", "MATLAB", "assembly", "Objective-C", "Fortran", "OCaml", "Clojure",
         "F#", "VBA", "Groovy", "Erlang", "Nim", "COBOL", "Solidity", "GLSL", "CUDA", "Verilog"]
FRAMEWORKS = ["React", "Vue", "Angular", "Django", "Flask", "FastAPI", "Spring Boot", "Express", "Node.js",
              "Rails", "Laravel", "pandas", "NumPy", "PyTorch", "TensorFlow", "jQuery", "Next.js", "Svelte",
              ".NET", "Qt", "Unity", "Android", "iOS", "SwiftUI", "Electron", "Redux", "GraphQL", "gRPC",
              "Kafka", "Redis", "PostgreSQL", "MySQL", "MongoDB", "SQLite", "Tailwind", "Bootstrap", "OpenGL"]
FN_TASKS = ["sorts a list of numbers", "checks if a string is a palindrome", "reads a JSON file",
            "counts how often each word appears in a text", "parses a date string", "validates an email address",
            "merges two sorted arrays", "removes duplicates from a list", "downloads a web page",
            "computes the SHA-256 hash of a file", "flattens a nested list", "finds the largest element in an array",
            "reverses a string", "checks whether a number is prime", "returns the nth Fibonacci number",
            "converts a CSV file to JSON", "uploads a file to S3", "sends an HTTP POST request",
            "reads environment variables", "generates a random password", "splits a sentence into words",
            "finds all files with a given extension", "connects to a database", "retries a request with backoff",
            "caches the results of an expensive call", "compresses a folder into a zip file",
            "transposes a matrix", "groups records by a key", "formats a number with commas",
            "detects cycles in a graph", "serializes an object to XML", "resizes an image",
            "streams a large file line by line", "logs errors to a file", "parses command line arguments",
            "schedules a job every hour", "walks a directory tree", "validates a form", "debounces a callback"]
ALGOS = ["quicksort", "merge sort", "heap sort", "binary search", "breadth-first search", "depth-first search",
         "Dijkstra's algorithm", "a hash map", "a linked list", "a stack", "a queue", "an LRU cache", "a trie",
         "a binary search tree", "a REST API", "a web scraper", "a command line tool", "a tokenizer",
         "a rate limiter", "a thread pool", "a priority queue", "union-find", "A* pathfinding",
         "a ring buffer", "a JSON parser", "a state machine", "a chat server", "a todo app", "a login page",
         "an event emitter", "a bloom filter", "topological sort", "a memory allocator", "a retry decorator",
         "a singleton class", "pagination for an API", "a websocket client", "a plugin system"]
ERRORS = ["segmentation fault", "null pointer exception", "stack overflow", "TypeError", "KeyError",
          "IndexError: list index out of range", "undefined reference error", "syntax error", "memory leak",
          "race condition", "deadlock", "infinite loop", "off-by-one error", "compile error", "linker error",
          "ImportError", "ModuleNotFoundError", "borrow checker error", "404 from my API", "CORS error",
          "merge conflict", "NullReferenceException", "ClassNotFoundException", "AttributeError",
          "unhandled promise rejection", "cannot read property of undefined", "type mismatch",
          "use after free", "buffer overflow", "ConcurrentModificationException", "panic: index out of range",
          "ValueError", "ZeroDivisionError", "permission denied error", "dependency conflict",
          "failing unit test", "flaky test", "build failure", "500 internal server error", "timeout in my query"]
CONCEPTS = ["pointers", "closures", "generics", "async/await", "decorators", "interfaces", "traits", "lambdas",
            "recursion", "inheritance", "promises", "goroutines", "virtual functions", "templates", "macros",
            "iterators", "references", "mutexes", "the event loop", "garbage collection", "dependency injection",
            "list comprehensions", "smart pointers", "lifetimes", "monads", "coroutines", "hooks",
            "polymorphism", "exceptions", "const correctness", "move semantics", "the GIL", "channels",
            "type inference", "pattern matching", "immutability", "callbacks", "prototypes", "SQL joins",
            "database indexes", "big O notation", "unit testing", "mocking", "regular expressions", "bit shifting"]
TOOLS = ["git", "Docker", "Kubernetes", "CMake", "a Makefile", "webpack", "npm", "pip", "cargo",
         "GitHub Actions", "a CI pipeline", "gdb", "a linter", "Jenkins", "a database migration", "a cron job",
         "valgrind", "VS Code", "vim", "Terraform", "nginx", "a virtual environment", "Maven", "Gradle",
         "pytest", "Jest", "ESLint", "Prettier", "a pre-commit hook", "Ansible", "a Dockerfile", "systemd"]
ARTIFACTS = ["function", "script", "program", "class", "loop", "query", "regex", "API endpoint", "unit test",
             "build", "React component", "SQL query", "shell script", "web server", "code", "module", "method",
             "app", "library", "pipeline", "microservice", "database schema", "parser", "makefile", "config file",
             "pull request", "recursive function", "constructor", "backend", "frontend", "CLI", "kernel module"]
SYMPTOMS = ["crash on startup", "return the wrong result", "hang forever", "use too much memory",
            "run so slowly", "fail to compile", "throw an exception", "print nothing", "leak memory",
            "give different results each run", "fail only in production", "time out", "segfault randomly",
            "not find the module", "ignore my config", "break after the update", "freeze the UI"]
SNIPPETS = ["for i in range(len(xs)): print(xs[i])", "int *p = malloc(10); free(p); free(p);",
            "const x = await fetch(url).json()", "SELECT * FROM users WHERE name = NULL",
            "def f(a=[]): a.append(1); return a", "if (x = 5) { return true; }", "while True: pass",
            "let v = vec![1,2,3]; let r = &v; drop(v);", "arr.map(x => { x * 2 })", "echo $PATH | tr ':' '\\n'",
            "public static void main(String[] args)", "printf(\"%d\", 3.5);", "x == None", "git reset --hard HEAD~1",
            "std::vector<int> v; v[3] = 1;", "for (int i = 0; i <= n; i++)", "SELECT COUNT(*) FROM orders GROUP BY day",
            "import numpy as np; np.dot(a, b.T)", "fn main() { println!(\"hi\"); }", "x = [i for i in y if i]"]

CODE_FRAMES = [
    lambda r: f"write a {pick(r, LANGS)} function that {pick(r, FN_TASKS)}",
    lambda r: f"write a function that {pick(r, FN_TASKS)}",
    lambda r: f"implement {pick(r, ALGOS)} in {pick(r, LANGS)}",
    lambda r: f"how do I implement {pick(r, ALGOS)}",
    lambda r: f"code {pick(r, ALGOS)} for me",
    lambda r: f"fix the bug in my {pick(r, LANGS)} {pick(r, ARTIFACTS)}",
    lambda r: f"debug this {pick(r, ERRORS)} in my {pick(r, ARTIFACTS)}",
    lambda r: f"I'm getting a {pick(r, ERRORS)} when I run my {pick(r, LANGS)} {pick(r, ARTIFACTS)}",
    lambda r: f"why does my {pick(r, LANGS)} {pick(r, ARTIFACTS)} {pick(r, SYMPTOMS)}",
    lambda r: f"my {pick(r, FRAMEWORKS)} {pick(r, ARTIFACTS)} keeps giving a {pick(r, ERRORS)}",
    lambda r: f"explain what this code does: {pick(r, SNIPPETS)}",
    lambda r: f"what is wrong with this line: {pick(r, SNIPPETS)}",
    lambda r: f"is there a bug in `{pick(r, SNIPPETS)}`",
    lambda r: f"convert this {pick(r, LANGS)} code to {pick(r, LANGS)}",
    lambda r: f"port my {pick(r, ARTIFACTS)} from {pick(r, LANGS)} to {pick(r, LANGS)}",
    lambda r: f"add unit tests for my {pick(r, ARTIFACTS)}",
    lambda r: f"optimize this {pick(r, LANGS)} {pick(r, ARTIFACTS)}, it is too slow",
    lambda r: f"refactor my {pick(r, ARTIFACTS)} to be more readable",
    lambda r: f"how do I {pick(r, ['use', 'set up', 'configure', 'install', 'get started with', 'debug'])} {pick(r, TOOLS)}",
    lambda r: f"how do I use {pick(r, FRAMEWORKS)} to build {pick(r, ALGOS)}",
    lambda r: f"what does {pick(r, CONCEPTS)} mean in {pick(r, LANGS)}",
    lambda r: f"explain {pick(r, CONCEPTS)} with a {pick(r, LANGS)} example",
    lambda r: f"review my {pick(r, LANGS)} code for bugs",
    lambda r: f"write a {pick(r, LANGS)} script to {pick(r, FN_TASKS).replace('s ', ' ', 1)}",
    lambda r: f"I get a {pick(r, ERRORS)} from {pick(r, TOOLS)}",
    lambda r: f"my {pick(r, TOOLS)} build fails with a {pick(r, ERRORS)}",
    lambda r: f"what is the difference between {pick(r, CONCEPTS)} and {pick(r, CONCEPTS)} in {pick(r, LANGS)}",
    lambda r: f"write a {pick(r, FRAMEWORKS)} {pick(r, ARTIFACTS)} that {pick(r, FN_TASKS)}",
    lambda r: f"generate {pick(r, ['a Dockerfile', 'a Makefile', 'a CMakeLists.txt', 'a GitHub Actions workflow', 'a bash script', 'a SQL schema', 'a regex', 'boilerplate code', 'a config file'])} for {pick(r, ['my web app', 'a Python project', 'a C library', 'a Node.js server', 'my API', 'a Go service', 'a Rust crate'])}",
    lambda r: f"help me understand this stack trace from my {pick(r, LANGS)} {pick(r, ARTIFACTS)}",
    lambda r: f"my {pick(r, ARTIFACTS)} compiles but {pick(r, SYMPTOMS)}",
    lambda r: f"write a regex that matches {pick(r, ['email addresses', 'phone numbers', 'dates', 'IP addresses', 'URLs', 'hex colors', 'zip codes'])}",
    lambda r: f"how can I make my {pick(r, LANGS)} {pick(r, ARTIFACTS)} faster",
    lambda r: f"what is the time complexity of {pick(r, ALGOS)}",
    lambda r: f"add error handling to this {pick(r, LANGS)} {pick(r, ARTIFACTS)}",
    lambda r: f"document this {pick(r, ARTIFACTS)} with comments and docstrings",
    lambda r: f"how do I {pick(r, ['undo a commit', 'squash commits', 'resolve a merge conflict', 'create a branch', 'revert a file', 'rebase onto main', 'cherry-pick a commit'])} in git",
    lambda r: f"{pick(r, SNIPPETS)} gives me a {pick(r, ERRORS)}, why",
]

# ---------------------------------------------------------------------------
# math
# ---------------------------------------------------------------------------
UNITS = [("kilometers", "miles"), ("miles", "kilometers"), ("kilograms", "pounds"), ("pounds", "kilograms"),
         ("degrees Celsius", "Fahrenheit"), ("Fahrenheit", "Celsius"), ("liters", "gallons"), ("gallons", "liters"),
         ("inches", "centimeters"), ("centimeters", "inches"), ("feet", "meters"), ("meters", "feet"),
         ("ounces", "grams"), ("grams", "ounces"), ("hours", "minutes"), ("minutes", "seconds"),
         ("mph", "km/h"), ("km/h", "m/s"), ("acres", "hectares"), ("cups", "milliliters"), ("yards", "meters"),
         ("days", "hours"), ("weeks", "days"), ("megabytes", "kilobytes"), ("gigabytes", "megabytes"),
         ("square feet", "square meters"), ("liters", "cubic centimeters"), ("tons", "kilograms"),
         ("nautical miles", "kilometers"), ("pints", "liters"), ("tablespoons", "teaspoons"),
         ("years", "seconds"), ("light years", "kilometers"), ("joules", "calories"), ("watts", "horsepower")]
SHAPES = ["circle", "square", "rectangle", "triangle", "sphere", "cube", "cylinder", "cone", "trapezoid",
          "hexagon", "pyramid", "parallelogram", "rhombus", "ellipse"]
FUNCS = ["x^2", "3x^3 - 2x", "sin(x)", "cos(2x)", "e^x", "ln(x)", "x*e^x", "1/x", "sqrt(x)", "tan(x)",
         "x^3 + 4x^2 - x + 7", "x sin(x)", "e^(-x^2)", "ln(x^2 + 1)", "5x^4", "2^x", "x/(x+1)", "cos(x)^2"]
STATS = ["mean", "median", "mode", "variance", "standard deviation", "range", "average", "sum",
         "interquartile range", "weighted average", "geometric mean"]
OPS = [("+", "plus"), ("-", "minus"), ("*", "times"), ("/", "divided by"), ("x", "multiplied by")]


def num(r, lo=2, hi=999):
    v = r.randint(lo, hi)
    if r.random() < 0.15:
        return f"{v}.{r.randint(1, 99)}"
    if r.random() < 0.08:
        return f"{v:,}" if v >= 1000 else str(v)
    return str(v)


def numlist(r):
    return ", ".join(str(r.randint(1, 99)) for _ in range(r.randint(4, 9)))


MATH_FRAMES = [
    lambda r: f"what is {num(r)} {pick(r, OPS)[r.randint(0, 1)]} {num(r)}",
    lambda r: f"calculate {num(r)} {pick(r, OPS)[0]} {num(r)} {pick(r, OPS)[0]} {num(r)}",
    lambda r: f"how much is {num(r)} {pick(r, OPS)[1]} {num(r)}",
    lambda r: f"{num(r)} {pick(r, OPS)[0]} {num(r)} = ?",
    lambda r: f"what's {r.randint(1, 99)}% of {num(r)}",
    lambda r: f"what percent of {num(r, 100, 5000)} is {num(r, 1, 99)}",
    lambda r: f"solve {r.randint(2, 9)}x {pick(r, ['+', '-'])} {r.randint(1, 30)} = {r.randint(1, 90)}",
    lambda r: f"solve for {pick(r, ['x', 'y', 'n', 't'])}: {r.randint(2, 9)}{pick(r, ['x', 'y', 'n', 't'])} - {r.randint(1, 20)} = {r.randint(1, 50)}",
    lambda r: f"find x if x^2 {pick(r, ['+', '-'])} {r.randint(1, 20)}x = {r.randint(1, 100)}",
    lambda r: f"solve the quadratic equation x^2 - {r.randint(1, 15)}x + {r.randint(1, 50)} = 0",
    lambda r: f"solve the system of equations {r.randint(1, 9)}x + {r.randint(1, 9)}y = {r.randint(1, 60)} and x - y = {r.randint(1, 9)}",
    lambda r: f"what is the derivative of {pick(r, FUNCS)}",
    lambda r: f"differentiate {pick(r, FUNCS)} with respect to x",
    lambda r: f"integrate {pick(r, FUNCS)} dx",
    lambda r: f"compute the integral of {pick(r, FUNCS)} from {r.randint(0, 3)} to {r.randint(4, 10)}",
    lambda r: f"find the limit of {pick(r, FUNCS)} as x goes to {pick(r, ['0', 'infinity', '1', '2'])}",
    lambda r: f"convert {num(r, 1, 500)} {pick(r, UNITS)[0]} to {pick(r, UNITS)[1]}",
    lambda r: (lambda u: f"convert {num(r, 1, 500)} {u[0]} to {u[1]}")(pick(r, UNITS)),
    lambda r: (lambda u: f"how many {u[1]} are in {num(r, 1, 100)} {u[0]}")(pick(r, UNITS)),
    lambda r: (lambda u: f"{num(r, 1, 300)} {u[0]} in {u[1]}")(pick(r, UNITS)),
    lambda r: f"what is the {pick(r, STATS)} of {numlist(r)}",
    lambda r: f"find the {pick(r, STATS)} and {pick(r, STATS)} of these numbers: {numlist(r)}",
    lambda r: f"what is the probability of rolling {pick(r, ['a six', 'two sixes', 'a sum of 7', 'an even number', 'three of a kind'])} with {pick(r, ['one die', 'two dice', 'three dice'])}",
    lambda r: f"if I flip a coin {r.randint(2, 20)} times, what is the probability of getting {r.randint(1, 10)} heads",
    lambda r: f"a bag has {r.randint(2, 9)} red and {r.randint(2, 9)} green balls, what is the chance of picking a red one",
    lambda r: f"what is the probability of drawing {pick(r, ['an ace', 'a heart', 'a king', 'two aces', 'a face card'])} from a deck of cards",
    lambda r: f"what is the area of a {pick(r, SHAPES)} with {pick(r, ['radius', 'side', 'base', 'width', 'height', 'diagonal'])} {num(r, 1, 50)}",
    lambda r: f"find the volume of a {pick(r, SHAPES)} with {pick(r, ['radius', 'side', 'height'])} {num(r, 1, 30)} cm",
    lambda r: f"what is the perimeter of a {pick(r, SHAPES)} with sides {r.randint(1, 40)} and {r.randint(1, 40)}",
    lambda r: f"a right triangle has legs {r.randint(1, 30)} and {r.randint(1, 30)}, find the hypotenuse",
    lambda r: f"what is the square root of {r.randint(2, 10000)}",
    lambda r: f"what is {r.randint(2, 20)} to the power of {r.randint(2, 12)}",
    lambda r: f"what is {r.randint(2, 15)} factorial",
    lambda r: f"is {r.randint(10, 9999)} a prime number",
    lambda r: f"find the greatest common divisor of {r.randint(6, 500)} and {r.randint(6, 500)}",
    lambda r: f"what is the lcm of {r.randint(2, 60)} and {r.randint(2, 60)}",
    lambda r: f"simplify the fraction {r.randint(2, 99)}/{r.randint(2, 99)}",
    lambda r: f"add the fractions {r.randint(1, 9)}/{r.randint(2, 12)} and {r.randint(1, 9)}/{r.randint(2, 12)}",
    lambda r: f"what is log base {pick(r, ['2', '10', 'e'])} of {r.randint(2, 1000)}",
    lambda r: f"a car travels {num(r, 10, 900)} km in {r.randint(1, 12)} hours, what is its average speed",
    lambda r: f"if I invest ${num(r, 100, 99999)} at {r.randint(1, 12)}% interest for {r.randint(1, 30)} years, how much will I have",
    lambda r: f"an item costs ${num(r, 5, 999)} with a {r.randint(5, 80)}% discount, what is the final price",
    lambda r: f"what is a {r.randint(10, 25)}% tip on a ${num(r, 10, 300)} bill",
    lambda r: f"split a ${num(r, 20, 900)} bill between {r.randint(2, 12)} people",
    lambda r: f"if {r.randint(2, 20)} workers build a wall in {r.randint(2, 30)} days, how long would {r.randint(2, 30)} workers take",
    lambda r: f"expand ({pick(r, ['x', 'a', '2x', 'y'])} + {r.randint(1, 9)})^{r.randint(2, 4)}",
    lambda r: f"factor {pick(r, ['x^2 - 16', 'x^2 + 5x + 6', 'x^3 - 8', '2x^2 - 8', 'x^2 - x - 12', 'a^2 - b^2'])}",
    lambda r: f"what is the determinant of the matrix [[{r.randint(0, 9)}, {r.randint(0, 9)}], [{r.randint(0, 9)}, {r.randint(0, 9)}]]",
    lambda r: f"compute the dot product of ({r.randint(0, 9)}, {r.randint(0, 9)}, {r.randint(0, 9)}) and ({r.randint(0, 9)}, {r.randint(0, 9)}, {r.randint(0, 9)})",
    lambda r: f"what is {r.randint(1, 9)}/{r.randint(2, 9)} as a decimal",
    lambda r: f"convert {r.randint(1, 99)}.{r.randint(1, 99)} to a fraction",
    lambda r: f"what is {r.randint(1, 999)} in binary",
    lambda r: f"round {num(r)}.{r.randint(100, 999)} to two decimal places",
    lambda r: f"by what percent did the price go up from ${r.randint(10, 99)} to ${r.randint(100, 300)}",
    lambda r: f"how many {pick(r, ['seconds', 'minutes', 'hours', 'days'])} are in {r.randint(1, 50)} {pick(r, ['years', 'weeks', 'days', 'hours'])}",
    lambda r: f"what is the sum of the angles in a {pick(r, SHAPES)}",
    lambda r: f"calculate the standard error for a sample of {r.randint(10, 500)} with standard deviation {r.randint(1, 30)}",
    lambda r: f"what is the z-score of {r.randint(50, 100)} if the mean is {r.randint(40, 80)} and sd is {r.randint(2, 15)}",
    lambda r: f"how many ways can I arrange {r.randint(3, 12)} books on a shelf",
    lambda r: f"choose {r.randint(2, 5)} out of {r.randint(6, 20)}, how many combinations",
]

# ---------------------------------------------------------------------------
# creative
# ---------------------------------------------------------------------------
FORMS = ["story", "short story", "poem", "haiku", "limerick", "sonnet", "free verse poem", "song", "song lyrics",
         "rap verse", "ballad", "fairy tale", "fable", "myth", "legend", "bedtime story", "ghost story",
         "love poem", "short play", "monologue", "dialogue", "scene", "screenplay scene", "flash fiction piece",
         "nursery rhyme", "ode", "epic poem", "diary entry from a fictional character", "science fiction story",
         "fantasy tale", "mystery story", "acrostic poem", "birthday poem", "lullaby", "comic strip script"]
SHORTFORMS = ["joke", "pun", "riddle", "knock-knock joke", "one-liner", "dad joke", "slogan", "tagline", "motto",
              "jingle", "catchphrase", "name", "title", "toast", "greeting card message", "pickup line", "tongue twister"]
CREATURES = ["dragon", "cat", "robot", "pirate", "wizard", "knight", "unicorn", "ghost", "astronaut", "fox",
             "detective", "mermaid", "giant", "penguin", "little girl", "old fisherman", "vampire", "alien",
             "princess", "goblin", "bear", "owl", "talking tree", "time traveler", "lonely lighthouse keeper",
             "squirrel", "baker", "ninja", "teapot", "snowman", "superhero", "villain", "witch", "dog"]
ADJS = ["brave", "lazy", "curious", "tiny", "grumpy", "shy", "clumsy", "wise", "lost", "friendly", "sleepy",
        "mischievous", "lonely", "cheerful", "forgetful", "ancient", "invisible", "hungry", "noisy", "gentle"]
DOING = ["learns to fly", "is afraid of the dark", "wants to be a chef", "finds a secret door", "loses its hat",
         "travels to the moon", "saves the village", "makes a new friend", "can't stop sneezing",
         "discovers a hidden treasure", "goes to school for the first time", "falls in love", "opens a bakery",
         "gets stuck in a time loop", "solves a mystery", "runs for president", "forgets its own name",
         "counts the stars", "builds a rocket", "meets its reflection"]
THEMES = ["the ocean", "autumn leaves", "the first snow", "friendship", "love", "loss", "the city at night",
          "a rainy afternoon", "the moon", "the stars", "coffee", "summer", "springtime", "mountains", "home",
          "childhood", "time", "hope", "the sea", "a forest", "the desert", "a sunrise", "a sunset", "dreams",
          "freedom", "a train journey", "an old house", "the wind", "winter", "music", "silence", "cats",
          "programming", "mathematics", "Mondays", "pizza", "the internet", "a broken heart", "fireflies"]
BUSINESSES = ["coffee shop", "bakery", "gym", "tech startup", "bookstore", "pet shop", "pizza place",
              "yoga studio", "dental clinic", "law firm", "bike shop", "ice cream stand", "car wash",
              "recycling campaign", "charity run", "school fundraiser", "podcast", "youtube channel", "band",
              "food truck", "flower shop", "hotel", "travel agency", "soap brand", "energy drink", "app",
              "board game", "sneaker brand", "cleaning service", "farmers market", "hackathon", "book club"]
OCCASIONS = ["my mom's birthday", "a wedding", "a retirement party", "Valentine's Day", "a graduation",
             "my friend's farewell", "an anniversary", "New Year's Eve", "a baby shower", "Mother's Day",
             "a team celebration", "Christmas"]
STYLES = ["", "", "", " in the style of Dr. Seuss", " in the style of Edgar Allan Poe", " that rhymes",
          " with a twist ending", " for kids", " in under 100 words", " in old English", " with a happy ending",
          " that is funny", " that is sad", " in three stanzas", " from the point of view of the villain"]
CREATIVE_FRAMES = [
    lambda r: f"write a {pick(r, FORMS)} about {pick(r, THEMES)}{pick(r, STYLES)}",
    lambda r: f"write a {pick(r, FORMS)} about a {pick(r, ADJS)} {pick(r, CREATURES)} who {pick(r, DOING)}",
    lambda r: f"tell me a {pick(r, FORMS)} about a {pick(r, CREATURES)}{pick(r, STYLES)}",
    lambda r: f"compose a {pick(r, FORMS)} about {pick(r, THEMES)}",
    lambda r: f"make up a {pick(r, FORMS)} where a {pick(r, CREATURES)} {pick(r, DOING)}",
    lambda r: f"tell me a {pick(r, ['joke', 'pun', 'riddle', 'knock-knock joke', 'one-liner', 'dad joke', 'funny joke'])} about {pick(r, THEMES + [c + 's' for c in CREATURES])}",
    lambda r: f"tell me a {pick(r, ['joke', 'funny joke', 'good joke', 'pun', 'riddle'])}",
    lambda r: f"I need a {pick(r, ['slogan', 'tagline', 'motto', 'jingle', 'catchphrase', 'name'])} for my {pick(r, BUSINESSES)}",
    lambda r: f"come up with {pick(r, ['a', 'three', 'five', 'ten', 'some'])} {pick(r, ['names', 'slogans', 'taglines', 'titles', 'catchy names', 'mottos'])} for a {pick(r, BUSINESSES)}",
    lambda r: f"brainstorm creative names for a {pick(r, BUSINESSES)}",
    lambda r: f"write a {pick(r, ['toast', 'poem', 'greeting card message', 'short speech', 'limerick'])} for {pick(r, OCCASIONS)}",
    lambda r: f"invent a {pick(r, ['character', 'creature', 'planet', 'superpower', 'magic spell', 'fictional country', 'villain', 'board game'])} and describe it",
    lambda r: f"imagine a world where {pick(r, ['cats rule', 'it never stops raining', 'people can fly', 'robots write poetry', 'the sun never sets', 'money does not exist', 'dreams are real'])} and write a story about it",
    lambda r: f"describe {pick(r, THEMES)} in poetic language",
    lambda r: f"write the opening line of a {pick(r, ['novel', 'mystery', 'thriller', 'romance', 'fantasy novel', 'horror story'])} about {pick(r, THEMES)}",
    lambda r: f"write a {pick(r, ['dialogue', 'conversation', 'scene'])} between a {pick(r, CREATURES)} and a {pick(r, CREATURES)}",
    lambda r: f"write {pick(r, ['lyrics', 'a chorus', 'a verse', 'a song'])} about {pick(r, THEMES)}",
    lambda r: f"create a {pick(r, ['riddle', 'tongue twister', 'limerick', 'haiku'])} about a {pick(r, CREATURES)}",
    lambda r: f"write a funny {pick(r, ['ad', 'commercial', 'product description', 'jingle', 'poem'])} for a {pick(r, BUSINESSES)}",
    lambda r: f"continue this story: the {pick(r, CREATURES)} opened the door and saw {pick(r, THEMES)}",
    lambda r: f"write a {pick(r, SHORTFORMS)} about {pick(r, THEMES)}",
    lambda r: f"give me a {pick(r, ADJS)} story idea about a {pick(r, CREATURES)}",
    lambda r: f"write a {pick(r, FORMS)} for my {pick(r, ['daughter', 'son', 'wife', 'husband', 'best friend', 'grandma', 'class', 'students'])}",
    lambda r: f"write a short poem that rhymes {pick(r, THEMES)} with {pick(r, THEMES)}",
]

# ---------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------
PAIRS = [("renting", "buying a home"), ("electric cars", "gas cars"), ("iPhone", "Android"),
         ("remote work", "office work"), ("stocks", "bonds"), ("capitalism", "socialism"),
         ("nuclear power", "solar power"), ("public schools", "private schools"), ("Mac", "Windows laptops"),
         ("AWS", "Azure"), ("freelancing", "a full-time job"), ("college", "a trade school"),
         ("the Roman Empire", "the Han dynasty"), ("Keynesian", "Austrian economics"), ("Netflix", "Disney+"),
         ("a Roth IRA", "a traditional IRA"), ("leasing a car", "buying a car"), ("city life", "rural life"),
         ("trains", "planes for travel in Europe"), ("index funds", "picking individual stocks"),
         ("the French Revolution", "the American Revolution"), ("Uber", "Lyft"), ("Spotify", "Apple Music"),
         ("a startup job", "a big company job"), ("democracy", "monarchy"), ("wind energy", "hydropower"),
         ("online courses", "classroom learning"), ("a gym membership", "working out at home"),
         ("Tesla", "Toyota as companies"), ("two marketing strategies", "the competition"),
         ("Plato", "Aristotle's views on government"), ("the 1929 crash", "the 2008 crisis")]
DOCS = ["article", "report", "research paper", "book chapter", "meeting notes", "transcript", "email thread",
        "study", "annual report", "policy document", "news story", "white paper", "case study", "survey results",
        "court ruling", "earnings call", "customer feedback", "user interviews", "legal contract", "essay",
        "press release", "novel", "documentary", "lecture", "podcast episode", "quarterly results", "proposal"]
TOPICS = ["climate change", "the housing market", "artificial intelligence regulation", "inflation",
          "World War I", "the fall of the Roman Empire", "social media and mental health",
          "renewable energy adoption", "supply chain problems", "the gig economy", "universal basic income",
          "global migration", "the history of the internet", "vaccine policy", "urban traffic",
          "electric vehicle adoption", "the cold war", "school funding", "the rise of streaming services",
          "income inequality", "deforestation", "cryptocurrency", "the aging population", "water scarcity",
          "the industrial revolution", "tariffs and trade", "plastic pollution", "four-day work weeks",
          "the space race", "obesity trends", "the decline of print newspapers", "automation and jobs"]
PLANS = ["a two-week trip to Italy", "a wedding on a budget", "a product launch", "a marketing campaign",
         "my monthly budget", "a study schedule for my exams", "a move to a new city", "a company offsite",
         "a content calendar", "a fundraising event", "the next quarter for my team", "a career change",
         "a weekly meal plan", "a training program for a marathon", "a home renovation", "a research project",
         "our hiring strategy", "a kitchen remodel", "a conference", "a migration to the cloud",
         "my retirement savings", "a road trip across the US", "a community garden", "a software release"]
ENTITIES = ["our marketing strategy", "this business plan", "the company's finances", "my resume",
            "this investment", "the new policy", "our pricing model", "the competitor's product",
            "this argument", "the proposal", "our customer churn", "this essay", "the survey data",
            "the election results", "the sales figures", "our website traffic", "the startup idea",
            "this contract", "the project timeline", "employee turnover", "the supply chain"]
ANALYSIS_FRAMES = [
    lambda r: (lambda p: f"compare {p[0]} and {p[1]}")(pick(r, PAIRS)),
    lambda r: (lambda p: f"what are the pros and cons of {p[0]} versus {p[1]}")(pick(r, PAIRS)),
    lambda r: (lambda p: f"which is better, {p[0]} or {p[1]}")(pick(r, PAIRS)),
    lambda r: (lambda p: f"weigh the tradeoffs between {p[0]} and {p[1]}")(pick(r, PAIRS)),
    lambda r: f"what are the pros and cons of {pick(r, TOPICS)}",
    lambda r: f"summarize this {pick(r, DOCS)} for me",
    lambda r: f"summarize the {pick(r, DOCS)} on {pick(r, TOPICS)}",
    lambda r: f"give me the key takeaways from this {pick(r, DOCS)}",
    lambda r: f"condense this {pick(r, DOCS)} into {pick(r, ['bullet points', 'a paragraph', 'three sentences', 'an executive summary', 'key points'])}",
    lambda r: f"tl;dr this {pick(r, DOCS)}",
    lambda r: f"research {pick(r, TOPICS)} and write a brief",
    lambda r: f"what are the main causes of {pick(r, TOPICS)}",
    lambda r: f"explain the economic impact of {pick(r, TOPICS)}",
    lambda r: f"analyze the trends in {pick(r, ENTITIES)}",
    lambda r: f"analyze {pick(r, ENTITIES)} and give recommendations",
    lambda r: f"evaluate the strengths and weaknesses of {pick(r, ENTITIES)}",
    lambda r: f"critique {pick(r, ENTITIES)}",
    lambda r: f"assess the risks of {pick(r, ['expanding overseas', 'this merger', 'launching early', 'raising prices', 'hiring fast', 'moving to the cloud', 'this investment', 'switching suppliers'])}",
    lambda r: f"help me plan {pick(r, PLANS)}",
    lambda r: f"make a detailed plan for {pick(r, PLANS)}",
    lambda r: f"create a roadmap for {pick(r, PLANS)}",
    lambda r: f"outline a strategy for {pick(r, PLANS)}",
    lambda r: f"do a SWOT analysis of {pick(r, ['Amazon', 'Tesla', 'our company', 'a local bakery', 'Netflix', 'my startup', 'Nike', 'a small hotel'])}",
    lambda r: f"write a literature review on {pick(r, TOPICS)}",
    lambda r: f"what does the research say about {pick(r, TOPICS)}",
    lambda r: f"break down the arguments for and against {pick(r, TOPICS)}",
    lambda r: f"I have to decide between {pick(r, PAIRS)[0]} and {pick(r, PAIRS)[1]}, help me think it through",
    lambda r: f"prioritize these {pick(r, ['tasks', 'features', 'projects', 'goals', 'bugs'])} and explain the order",
    lambda r: f"forecast {pick(r, ['sales', 'demand', 'growth', 'costs', 'user numbers'])} for next year based on {pick(r, ENTITIES)}",
    lambda r: f"give me an in-depth analysis of {pick(r, TOPICS)}",
    lambda r: f"what are the long-term effects of {pick(r, TOPICS)}",
    lambda r: f"review this {pick(r, DOCS)} and point out the weak points",
    lambda r: f"compare the {pick(r, ['economies', 'healthcare systems', 'education systems', 'cultures', 'tax systems'])} of {pick(r, ['Japan', 'Germany', 'Brazil', 'the US', 'France', 'India', 'Canada', 'China'])} and {pick(r, ['Sweden', 'Mexico', 'the UK', 'Korea', 'Italy', 'Australia', 'Nigeria'])}",
    lambda r: f"what lessons can we learn from {pick(r, TOPICS)}",
    lambda r: f"write a report comparing {pick(r, PAIRS)[0]} with {pick(r, PAIRS)[1]}",
]

# ---------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------
GREETS = ["hi", "hello", "hey", "hey there", "hi there", "good morning", "good afternoon", "good evening",
          "howdy", "greetings", "yo", "hiya", "morning", "sup", "hello friend", "heyyy", "hi again"]
SMALLTALK = ["how are you", "how are you doing", "what's up", "how's it going", "how's your day",
             "how was your weekend", "what are you up to", "are you there", "what's new", "long time no see",
             "how have you been", "nice to meet you", "pleased to meet you"]
THANKS = ["thanks", "thank you", "thanks a lot", "thank you so much", "cheers", "much appreciated",
          "that helped, thanks", "great, thank you", "awesome thanks", "perfect, thanks", "ok cool",
          "got it", "okay", "sounds good", "cool", "nice", "haha", "lol", "wow", "oh really"]
BYES = ["bye", "goodbye", "see you", "see you later", "good night", "talk to you later", "catch you later",
        "have a nice day", "I have to go", "later", "take care"]
IDENTITY = ["who are you", "what's your name", "what are you", "are you a bot", "are you human",
            "what can you do", "who made you", "are you an AI", "do you have feelings", "how old are you",
            "where are you from", "what do you like to do"]
LIKES = ["pizza", "music", "movies", "dogs", "cats", "the beach", "summer", "coffee", "tea", "chocolate",
         "video games", "football", "reading", "hiking", "rainy days", "jazz", "cooking", "traveling"]
FEELINGS = ["I'm tired", "I'm bored", "I'm so happy today", "I feel sad", "I had a long day", "I'm stressed",
            "I'm excited", "I just woke up", "I can't sleep", "I'm hungry", "today was great",
            "work was rough today", "I'm nervous about tomorrow", "I finally finished my exams",
            "I just got back from vacation", "my cat is sleeping on my keyboard", "it's my birthday",
            "I got a new job", "I'm feeling lonely", "it's raining again"]
EVERYDAY = ["what should I eat for lunch", "what should I have for breakfast", "how long do I boil an egg",
            "should I wear a jacket today", "what's a good movie to watch tonight", "recommend a song",
            "what's a good name for my dog", "how do I get rid of hiccups", "is coffee bad for you",
            "how much water should I drink a day", "what time is it", "what day is it today",
            "what's the weather like", "how do I remove a wine stain", "can you recommend a podcast",
            "what should I do this weekend", "how do I tie a tie", "what's a good gift for my dad",
            "how do I fall asleep faster", "what color goes with navy blue", "is it ok to drink coffee at night",
            "how often should I water a cactus", "what's your favorite food", "what's your favorite movie",
            "any tips for staying focused", "how do I clean my glasses", "what's a fun hobby to try",
            "how do I make my room smell nice", "should I get a cat or a dog", "how do I keep my plants alive",
            "what do you do for fun", "can you keep me company", "what's the capital of France",
            "what's the capital of Japan", "who wrote Romeo and Juliet", "how many legs does a spider have",
            "what color is the sky", "why is the sky blue", "what do cats eat", "how do I make tea",
            "what's a good breakfast", "is it going to rain today", "how do I unclog a drain",
            "what's a nice place for a picnic", "can you recommend a good book", "what is a good snack"]
CHAT_FRAMES = [
    lambda r: pick(r, GREETS),
    lambda r: f"{pick(r, GREETS)}, {pick(r, SMALLTALK)}",
    lambda r: pick(r, SMALLTALK),
    lambda r: pick(r, THANKS),
    lambda r: pick(r, BYES),
    lambda r: pick(r, IDENTITY),
    lambda r: f"{pick(r, GREETS)}! {pick(r, IDENTITY)}",
    lambda r: f"do you like {pick(r, LIKES)}",
    lambda r: f"I love {pick(r, LIKES)}",
    lambda r: f"what's your favorite {pick(r, ['color', 'food', 'movie', 'song', 'animal', 'season', 'book', 'game', 'drink'])}",
    lambda r: pick(r, FEELINGS),
    lambda r: f"{pick(r, GREETS)}, {pick(r, FEELINGS)}",
    lambda r: pick(r, EVERYDAY),
    lambda r: pick(r, EVERYDAY),
    lambda r: f"{pick(r, GREETS)}! {pick(r, EVERYDAY)}",
    lambda r: f"let's {pick(r, ['chat', 'talk', 'just talk', 'have a chat', 'chat for a bit'])}",
    lambda r: f"happy {pick(r, ['birthday', 'new year', 'friday', 'monday', 'holidays', 'weekend'])}",
    lambda r: f"{pick(r, THANKS)}, {pick(r, BYES)}",
]

ROUTE_FRAMES = {"code": CODE_FRAMES, "math": MATH_FRAMES, "creative": CREATIVE_FRAMES,
                "analysis": ANALYSIS_FRAMES, "chat": CHAT_FRAMES}


def route_request(rng, route):
    core = pick(rng, ROUTE_FRAMES[route])(rng)
    if route == "chat":
        # chat messages are short and casual: light decoration only
        p = pick(rng, ["", "", "", "", "", "hey, ", "hi, ", "so ", "ok ", "well, ", "oh, ", "hmm "])
        s = pick(rng, ["", "", "!", "?", "!!", " :)", ".", "...", " lol"])
        t = p + core + s
        return t[:1].upper() + t[1:] if rng.random() < 0.5 else t
    return wrap(rng, core)


# ---------------------------------------------------------------------------
# other classification sets (same prompt format, different labels)
# ---------------------------------------------------------------------------
def _review(rng, pol):
    things = ["the food", "this phone", "the hotel", "the movie", "the service", "this laptop", "the staff",
              "the book", "the delivery", "the app", "this restaurant", "the concert", "my new shoes"]
    pos = ["was amazing", "is fantastic", "exceeded my expectations", "was wonderful", "is great value",
           "made my day", "works perfectly", "was delicious", "is the best I've had", "was excellent"]
    neg = ["was terrible", "is awful", "broke after a day", "was a waste of money", "is so slow",
           "was rude", "arrived late and damaged", "was disgusting", "is the worst I've had", "keeps crashing"]
    neu = ["was okay", "is average", "was fine I guess", "arrived on Tuesday", "is about what I expected",
           "was neither good nor bad", "has a blue cover", "is available in three sizes", "was delivered today"]
    verb = {"positive": pos, "negative": neg, "neutral": neu}[pol]
    return f"{pick(rng, things)} {pick(rng, verb)}".capitalize()


def _topic(rng, t):
    d = {
        "sports": ["the team won the championship last night", "the striker scored twice in the final",
                   "the tennis match went to five sets", "the marathon had record participation",
                   "the coach was fired after the losing season", "the olympics open next month"],
        "politics": ["the senate passed the new bill", "the president gave a speech on the economy",
                     "voters head to the polls on sunday", "the minister resigned after the scandal",
                     "parliament debated the budget", "the election results were contested"],
        "technology": ["the company released a new smartphone", "a new AI model beats the benchmark",
                       "the chip maker announced faster processors", "the app update adds dark mode",
                       "researchers built a quantum computer", "the social network changed its algorithm"],
        "food": ["this pasta recipe uses fresh basil", "the new restaurant serves vegan burgers",
                 "bake the bread for forty minutes", "the chef opened a sushi bar",
                 "chocolate prices are rising", "the best tacos in town"],
        "health": ["doctors recommend eight hours of sleep", "the new vaccine was approved",
                   "walking daily lowers blood pressure", "the hospital opened a new wing",
                   "flu cases are rising this winter", "a study links sugar to heart disease"],
    }
    return pick(rng, d[t]).capitalize()


def _support(rng, t):
    d = {
        "billing": ["I was charged twice this month", "how do I update my credit card", "I want a refund",
                    "why is my invoice higher than usual", "cancel my subscription payment"],
        "technical": ["the app crashes when I log in", "I can't connect to wifi with your router",
                      "the website shows an error page", "my device won't turn on", "the update failed"],
        "shipping": ["where is my package", "my order hasn't arrived yet", "can I change my delivery address",
                     "the parcel was delivered to the wrong house", "how long does shipping take"],
        "account": ["I forgot my password", "how do I delete my account", "I can't log in to my profile",
                    "change the email on my account", "someone hacked my account"],
    }
    return pick(rng, d[t])


CLS_SETS = [
    ([("positive", "the text expresses a good opinion"), ("negative", "the text expresses a bad opinion"),
      ("neutral", "neither positive nor negative")], _review),
    ([("sports", "games, teams, athletes"), ("politics", "government, elections, laws"),
      ("technology", "gadgets, software, science"), ("food", "cooking, restaurants, recipes"),
      ("health", "medicine, fitness, disease")], _topic),
    ([("billing", "payments, invoices, refunds"), ("technical", "bugs, errors, devices not working"),
      ("shipping", "deliveries and orders"), ("account", "login, passwords, profile")], _support),
]


# ---------------------------------------------------------------------------
# chat / QA / instruction answers
# ---------------------------------------------------------------------------
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
            "Canada": "Ottawa", "Australia": "Canberra", "Brazil": "Brasilia", "Egypt": "Cairo",
            "India": "New Delhi", "China": "Beijing", "Russia": "Moscow", "Mexico": "Mexico City",
            "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm", "Greece": "Athens",
            "Portugal": "Lisbon", "Ireland": "Dublin", "Poland": "Warsaw", "Argentina": "Buenos Aires",
            "Peru": "Lima", "Chile": "Santiago", "Turkey": "Ankara", "Thailand": "Bangkok",
            "Vietnam": "Hanoi", "South Korea": "Seoul", "Austria": "Vienna", "Belgium": "Brussels",
            "the Netherlands": "Amsterdam", "Switzerland": "Bern", "Finland": "Helsinki",
            "Denmark": "Copenhagen", "Hungary": "Budapest", "Nigeria": "Abuja", "Morocco": "Rabat",
            "Cuba": "Havana", "Colombia": "Bogota", "New Zealand": "Wellington", "the United Kingdom": "London",
            "the United States": "Washington, D.C.", "Indonesia": "Jakarta", "Iran": "Tehran"}
DEFS = {
    "a volcano": "a mountain with an opening that lets hot lava, ash and gas escape from inside the Earth",
    "photosynthesis": "the process plants use to turn sunlight, water and carbon dioxide into food and oxygen",
    "gravity": "the force that pulls objects toward each other, like the pull that keeps us on the ground",
    "an atom": "the smallest unit of a chemical element, made of protons, neutrons and electrons",
    "a computer": "a machine that stores data and follows instructions to perform calculations",
    "democracy": "a system of government where people choose their leaders by voting",
    "an ecosystem": "a community of living things and their environment working together",
    "a planet": "a large round object in space that orbits a star",
    "inflation": "a general rise in prices that makes money buy less over time",
    "a noun": "a word that names a person, place, thing or idea",
    "a verb": "a word that describes an action or a state",
    "the internet": "a worldwide network of computers that share information",
    "a virus": "a tiny germ that can only multiply inside the cells of a living host",
    "a rainbow": "an arc of colors in the sky made when sunlight passes through raindrops",
    "an algorithm": "a step-by-step set of instructions for solving a problem",
    "a mammal": "a warm-blooded animal with hair that feeds its young with milk",
    "a democracy": "a form of government in which citizens choose their leaders",
    "electricity": "a form of energy carried by moving electrons",
    "a glacier": "a huge, slow-moving mass of ice",
    "a language model": "a program that predicts the next word of a text and can answer questions",
    "a router": "a device or program that sends each request to the right place",
    "oxygen": "a gas in the air that people and animals need to breathe",
    "a recipe": "a list of ingredients and steps for making a dish",
    "an island": "a piece of land surrounded by water",
    "the sun": "the star at the center of our solar system",
    "a desert": "a dry area that gets very little rain",
    "a haiku": "a short Japanese poem with three lines of five, seven and five syllables",
    "a prime number": "a whole number greater than 1 that is only divisible by 1 and itself",
    "a triangle": "a shape with three sides and three angles",
    "friendship": "a close relationship between people who care about each other",
}
JOKES = ["Why did the scarecrow win an award? Because he was outstanding in his field.",
         "Why don't scientists trust atoms? Because they make up everything.",
         "What do you call a fake noodle? An impasta.",
         "Why did the bicycle fall over? Because it was two tired.",
         "Why do programmers prefer dark mode? Because light attracts bugs.",
         "What do you call a bear with no teeth? A gummy bear.",
         "Why did the math book look sad? Because it had too many problems.",
         "How does a penguin build its house? Igloos it together.",
         "Why can't you give Elsa a balloon? Because she will let it go.",
         "What do you call a sleeping dinosaur? A dino-snore."]
ANIMAL_SOUNDS = {"a dog": "barks", "a cat": "meows", "a cow": "moos", "a duck": "quacks", "a sheep": "baas",
                 "a lion": "roars", "a horse": "neighs", "a pig": "oinks", "a snake": "hisses", "an owl": "hoots",
                 "a frog": "croaks", "a bee": "buzzes", "a mouse": "squeaks", "a rooster": "crows"}
OPPOSITES = {"hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark", "up": "down",
             "old": "young", "open": "closed", "early": "late", "full": "empty", "hard": "soft", "loud": "quiet",
             "rich": "poor", "strong": "weak", "tall": "short", "wet": "dry", "day": "night", "win": "lose"}
COLORS = {"the sky": "blue", "grass": "green", "snow": "white", "a banana": "yellow", "coal": "black",
          "a tomato": "red", "an orange": "orange", "a lemon": "yellow", "chocolate": "brown",
          "a strawberry": "red", "the sun": "yellow", "milk": "white", "a carrot": "orange"}
TIPS = {
    "sleeping better": ["Go to bed at the same time every night.", "Keep your bedroom dark and cool.",
                        "Avoid screens and caffeine before bed."],
    "studying": ["Study in short, focused sessions.", "Test yourself instead of rereading.",
                 "Take regular breaks and sleep well."],
    "saving money": ["Make a monthly budget.", "Cook at home more often.", "Save a fixed amount each payday."],
    "staying healthy": ["Eat plenty of vegetables.", "Move your body every day.", "Drink enough water."],
    "writing clean code": ["Use clear names.", "Keep functions small.", "Write tests for your code."],
    "reducing stress": ["Take slow, deep breaths.", "Go for a walk outside.", "Talk to someone you trust."],
    "learning a language": ["Practice a little every day.", "Listen to native speakers.",
                            "Learn the most common words first."],
    "public speaking": ["Practice out loud.", "Know your opening by heart.", "Speak slowly and pause."],
}
FRUITS = ["apple", "banana", "orange", "mango", "grape", "pear", "cherry", "peach", "plum", "kiwi", "lemon"]
ANIMALS = ["dog", "cat", "horse", "rabbit", "lion", "tiger", "elephant", "giraffe", "zebra", "bear", "wolf", "fox"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NUMWORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
POEM_LINES = [
    ("Soft and slow, {t} drifts by,", "a quiet song beneath the sky."),
    ("I think of {t} when the day is new,", "and every color feels more true."),
    ("In {t} I find a gentle light,", "that keeps me company at night."),
    ("Oh {t}, so simple and so wide,", "you carry all my dreams inside."),
]
STORY_END = ["and from that day on, everyone in the village called it a hero.",
             "and it learned that being kind is the greatest magic of all.",
             "and it finally felt at home.",
             "and the whole forest celebrated until the stars came out.",
             "and it never felt lonely again."]
SLOGAN_T = ["{B}: good things, every day.", "Come for the {b}, stay for the smiles.",
            "{B}. Made with care, made for you.", "Your neighborhood {b}, always open to you.",
            "Fresh ideas from your favorite {b}."]

GREET_ANS = ["Hello! How can I help you today?", "Hi there! What can I do for you?",
             "Hey! Nice to hear from you. How can I help?", "Hello! I'm here if you need anything."]
SMALLTALK_ANS = ["I'm doing well, thank you for asking! How about you?", "All good here! How can I help you today?",
                 "I'm great, thanks! What's on your mind?"]
THANKS_ANS = ["You're welcome! Happy to help.", "Anytime! Let me know if you need anything else.",
              "Glad I could help!"]
BYE_ANS = ["Goodbye! Have a great day.", "See you later! Take care.", "Bye! It was nice talking with you."]
IDENTITY_ANS = {
    "who are you": "I am a small language model built into lfmd. I route requests and answer short questions.",
    "what's your name": "I am the lfmd router, a small model that ships with lfmd.",
    "what are you": "I am a small language model that routes requests and answers simple questions.",
    "are you a bot": "Yes, I am a small language model built into lfmd.",
    "are you human": "No, I am a small language model, not a person.",
    "what can you do": "I can sort requests into routes like code, math, creative, analysis and chat, and answer short questions.",
    "who made you": "I was trained by the lfmd project as its small default model.",
    "are you an AI": "Yes, I am a small AI language model built into lfmd.",
    "do you have feelings": "No, I am a language model, so I don't have feelings, but I am happy to chat.",
    "how old are you": "I am a language model, so I don't have an age.",
    "where are you from": "I was trained by the lfmd project and I run inside lfmd.",
    "what do you like to do": "I like sorting requests and answering short questions.",
}


def _cap(s):
    return s[:1].upper() + s[1:]


def _arith(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    op = rng.choice(["plus", "minus", "times"])
    if op == "minus" and b > a:
        a, b = b, a
    if op == "times":
        a, b = rng.randint(0, 12), rng.randint(0, 12)
    res = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    sym = {"plus": "+", "minus": "-", "times": "*"}[op]
    q = rng.choice([f"What is {a} {op} {b}?", f"what is {a} {sym} {b}", f"{a} {sym} {b} = ?",
                    f"How much is {a} {op} {b}?", f"Calculate {a} {sym} {b}."])
    return q, f"{a} {op} {b} is {res}."


def chat_pair(rng):
    """A (user, assistant) question/answer or instruction pair."""
    k = rng.randrange(24)
    if k == 0:
        c, cap = rng.choice(list(CAPITALS.items()))
        q = rng.choice([f"What is the capital of {c}?", f"what's the capital of {c}", f"Capital of {c}?",
                        f"Tell me the capital city of {c}."])
        return q, f"The capital of {c} is {cap}."
    if k == 1:
        return _arith(rng)
    if k == 2:
        w, d = rng.choice(list(DEFS.items()))
        q = rng.choice([f"What is {w}?", f"Explain what {w} is.", f"Define {w}.", f"what is {w}",
                        f"Can you tell me what {w} is?"])
        return q, f"{_cap(w)} is {d}."
    if k == 3:
        q = rng.choice(["Tell me a joke.", "tell me a joke", "Do you know any jokes?", "Make me laugh.",
                        "Tell me something funny."])
        return q, rng.choice(JOKES)
    if k == 4:
        a, s = rng.choice(list(ANIMAL_SOUNDS.items()))
        return rng.choice([f"What sound does {a} make?", f"What noise does {a} make?"]), f"{_cap(a)} {s}."
    if k == 5:
        w, o = rng.choice(list(OPPOSITES.items()))
        return rng.choice([f"What is the opposite of {w}?", f"Opposite of {w}?"]), f"The opposite of {w} is {o}."
    if k == 6:
        t, c = rng.choice(list(COLORS.items()))
        return rng.choice([f"What color is {t}?", f"what colour is {t}"]), f"{_cap(t)} is usually {c}."
    if k == 7:
        t, tips = rng.choice(list(TIPS.items()))
        q = rng.choice([f"Give me three tips for {t}.", f"Any tips for {t}?", f"How can I get better at {t}?",
                        f"What are some tips for {t}?"])
        return q, "Here are three tips:\n" + "\n".join(f"{i + 1}. {x}" for i, x in enumerate(tips))
    if k == 8:
        a, b = sorted(rng.sample(range(1, 21), 2))
        if b - a > 9:
            b = a + rng.randint(2, 9)
        return rng.choice([f"Count from {a} to {b}.", f"count from {a} to {b}"]), ", ".join(str(i) for i in range(a, b + 1)) + "."
    if k == 9:
        kind, xs = rng.choice([("fruits", FRUITS), ("animals", ANIMALS), ("colors", sorted(set(COLORS.values())))])
        n = rng.randint(2, 5)
        items = rng.sample(xs, n)
        return rng.choice([f"Name {NUMWORDS[n]} {kind}.", f"List {n} {kind}.", f"Give me {n} {kind}."]), _cap(", ".join(items)) + "."
    if k == 10:
        i = rng.randrange(7)
        return rng.choice([f"What day comes after {DAYS[i]}?", f"What is the day after {DAYS[i]}?"]), f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}."
    if k == 11:
        i = rng.randrange(12)
        return rng.choice([f"What month comes after {MONTHS[i]}?", f"Which month follows {MONTHS[i]}?"]), f"{MONTHS[(i + 1) % 12]} comes after {MONTHS[i]}."
    if k == 12:
        w = rng.choice(FRUITS + ANIMALS + ["house", "table", "river", "garden", "cloud", "pencil"])
        return rng.choice([f"Spell the word {w}.", f"How do you spell {w}?"]), "-".join(w.upper()) + "."
    if k == 13:
        t = rng.choice(THEMES)
        (l1, l2), (l3, l4) = rng.sample(POEM_LINES, 2)
        q = rng.choice([f"Write a short poem about {t}.", f"write a poem about {t}", f"A short poem about {t}, please."])
        return q, f"{_cap(l1.format(t=t))}\n{l2}\n{_cap(l3.format(t=t))}\n{l4}"
    if k == 14:
        a, c, d = rng.choice(ADJS), rng.choice(CREATURES), rng.choice(DOING)
        q = rng.choice([f"Tell me a short story about a {a} {c}.", f"Write a tiny story about a {c} who {d}."])
        return q, (f"Once upon a time, there was a {a} {c} who {d}. It was not easy at first, "
                   f"but with a little courage and help from a friend, it kept going, {rng.choice(STORY_END)}")
    if k == 15:
        b = rng.choice(BUSINESSES)
        return rng.choice([f"Write a slogan for a {b}.", f"Give me a slogan for my {b}."]), rng.choice(SLOGAN_T).format(b=b, B=_cap(b))
    if k == 16:
        g = rng.choice(GREETS)
        return _cap(g) + rng.choice(["!", "", "."]), rng.choice(GREET_ANS)
    if k == 17:
        return _cap(rng.choice(SMALLTALK)) + rng.choice(["?", ""]), rng.choice(SMALLTALK_ANS)
    if k == 18:
        return _cap(rng.choice(THANKS)) + rng.choice(["!", ""]), rng.choice(THANKS_ANS)
    if k == 19:
        return _cap(rng.choice(BYES)) + rng.choice(["!", ""]), rng.choice(BYE_ANS)
    if k == 20:
        q, a = rng.choice(list(IDENTITY_ANS.items()))
        return _cap(q) + "?", a
    if k == 21:
        # routing explained in words (the route names and what they mean)
        r = rng.choice(ROUTES)
        q = rng.choice([f"What is the {r} route for?", f"What does the {r} route handle?"])
        return q, f"The {r} route handles {ROUTE_DESC[r]}."
    if k == 22:
        w = rng.choice(FRUITS + ANIMALS + ["book", "car", "tree", "chair", "star", "boat"])
        pl = w + ("es" if w.endswith(("s", "ch", "sh", "x")) else "s")
        return rng.choice([f"What is the plural of {w}?", f"Plural of {w}?"]), f"The plural of {w} is {pl}."
    # k == 23: simple instruction: repeat / uppercase
    w = " ".join(rng.sample(FRUITS + ANIMALS + LIKES, rng.randint(2, 4)))
    if rng.random() < 0.5:
        return f"Repeat after me: {w}", w
    return f"Write this in capital letters: {w}", w.upper()


CHAT_SYSTEMS = ["", "", "You are a helpful assistant.", "You are a helpful assistant.",
                "You are a friendly assistant. Keep answers short.", "You are lfmd's built-in assistant."]


# ---------------------------------------------------------------------------
# example generators
# ---------------------------------------------------------------------------
def routing_example(rng, route=None):
    route = route or pick(rng, ROUTES)
    text = route_request(rng, route)
    x = rng.random()
    if x < 0.50:
        system, answer = DEFAULT_ROUTING_SYSTEM, route
    else:
        # variants of the generic prompt: shuffled order, subsets, aliases, other descriptions
        names = list(ROUTES)
        others = [n for n in names if n != route]
        drop = set(rng.sample(others, rng.choice([0, 0, 0, 1, 2])))
        names = [n for n in names if n not in drop]
        if rng.random() < 0.5:
            rng.shuffle(names)
        use_alias = rng.random() < 0.35
        desc_mode = rng.random()
        lines, answer = [], route
        for n in names:
            nm = pick(rng, ALIASES[n]) if use_alias else n
            if desc_mode < 0.55:
                d = ROUTE_DESC[n]
            elif desc_mode < 0.85:
                d = pick(rng, ALT_DESC[n])
            else:
                d = ""
            lines.append((nm, d))
            if n == route:
                answer = nm
        system = routing_system_prompt(lines)
    return {"system": system, "user": text, "assistant": answer, "kind": "route:" + route}


def chatform_routing_example(rng):
    """Routing asked in one user turn, without a system prompt."""
    route = pick(rng, ROUTES)
    text = route_request(rng, route)
    q = pick(rng, [f"Which route should handle this request: \"{text}\"? Routes: code, math, creative, analysis, chat.",
                   f"Route this request to one of code, math, creative, analysis, chat: {text}",
                   f"Which service should handle this? {text}\nOptions: code, math, creative, analysis, chat"])
    return {"system": "", "user": q, "assistant": route, "kind": "route:" + route}


def cls_example(rng):
    labels, gen = pick(rng, CLS_SETS)
    lab = pick(rng, labels)[0]
    text = gen(rng, lab)
    ls = list(labels)
    if rng.random() < 0.5:
        rng.shuffle(ls)
    if rng.random() < 0.3:
        ls = [(n, "") for n, _ in ls]
    return {"system": routing_system_prompt(ls), "user": text, "assistant": lab, "kind": "cls"}


def chat_example(rng):
    q, a = chat_pair(rng)
    return {"system": pick(rng, CHAT_SYSTEMS), "user": q, "assistant": a, "kind": "chat"}


def generate(seed, n):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = rng.random()
        if x < 0.60:
            out.append(routing_example(rng))
        elif x < 0.64:
            out.append(chatform_routing_example(rng))
        elif x < 0.70:
            out.append(cls_example(rng))
        else:
            out.append(chat_example(rng))
    return out


# ---------------------------------------------------------------------------
# chat format (lfm2-spec.md §5.4)
# ---------------------------------------------------------------------------
BOS, IM_START, IM_END = "<|startoftext|>", "<|im_start|>", "<|im_end|>"


def render_prompt(system, user):
    s = BOS
    if system:
        s += f"{IM_START}system\n{system}{IM_END}\n"
    s += f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"
    return s


def render(ex):
    """Training text: prompt + answer + <|im_end|> (no trailing newline)."""
    p = render_prompt(ex["system"], ex["user"])
    return p, p + ex["assistant"] + IM_END


if __name__ == "__main__":
    import argparse
    import collections
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--show", type=int, default=10)
    a = ap.parse_args()
    data = generate(a.seed, a.n)
    print(collections.Counter(e["kind"] for e in data))
    print("unique user texts:", len(set(e["user"] for e in data)), "of", len(data))
    for e in data[: a.show]:
        print(repr(e["user"]), "->", repr(e["assistant"]))
    print(DEFAULT_ROUTING_SYSTEM)
