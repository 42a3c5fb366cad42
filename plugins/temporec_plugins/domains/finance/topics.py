"""Topics of financial headlines: which macro themes, sectors, corporate events and
companies a text is about, for the per-topic series of the sentiment monitor.

The taxonomy (``TAXONOMY``) was chosen from counts over the 53,245 headlines of
``../shared/data/financial-headlines``: themes that hold at least ~1% of the stream
(about one headline in two days or more), and the 12 companies named at least 0.4 times
a day. Each topic has a one-line description, and three kinds of evidence:

- ``names``: a regex of proper names, tickers, acronyms and products, matched **with their case**
  (``Apple`` the company, not ``apple`` the fruit; ``GM`` not ``gm``), with lookaheads
  where a name is also a phrase (``Fed`` but not "Fed up", ``Amazon`` but not "Amazon
  rainforest");
- ``words``: a regex of common words and phrases, matched in any case;
- ``seeds``: phrases whose MiniLM embeddings, averaged, stand for the topic in the
  zero-shot method.

Every pattern is matched on word boundaries (``Ford`` is not in "Stanford", ``tax`` not
in "taxi"). A company brings its sectors (``implies``: Boeing is ``sector:travel``).

Methods (``TopicTagger(method=...)``), compared on the dev half of
``benchmarks/annotations/headline_topics.tsv`` by ``benchmarks/topics.py``:

- ``rules`` (the default, best on dev): the names and words above; no model, about 0.13 ms of
  CPU a text;
- ``embeddings``: cosine between a text's MiniLM vector (the one the monitor already
  has for the sentiment encoder: pass it as ``vectors``) and each topic's seed
  prototype, a topic where it reaches ``threshold``;
- ``union``: both.

On unseen headlines the rules generalise through the words (a theme is named by a small
vocabulary: tariffs, lockdown, mortgage) and fail on companies outside the gazetteer;
the embeddings generalise to paraphrases but confuse neighbouring themes (test micro F1
0.89 for the rules, 0.57 for the embeddings: ``benchmarks/RESULTS.md``, finance-topics).
There is no named-entity model: a new company needs an entry in ``COMPANIES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from temporec import Encoder, InvalidArgument

METHODS = ("rules", "embeddings", "union")


@dataclass(frozen=True)
class Topic:
    description: str
    names: str = ""  # a regex of alternatives, case-sensitive
    words: str = ""  # a regex of alternatives, any case
    seeds: tuple[str, ...] = ()  # phrases for the embedding prototype (with the description)
    implies: tuple[str, ...] = ()  # topics that come with this one (a company's sectors)


# ---- macro themes: a topic holds at least ~1% of the stream ------------------------------
MACRO = {
    "macro:rates": Topic(
        "central banks, interest rates, monetary policy, government bonds and yields",
        names=(
            r"Fed(?! up\b)|Federal Reserve|FOMC|ECB|Bank of England|BoE|BOE|BOJ|BoJ|Bank of Japan|PBOC|RBA|RBI|"
            "Reserve Bank|Powell|Lagarde|Draghi|Carney|Kuroda|Treasuries|QE|Vlieghe"
        ),
        words=(
            "central banks?|central bankers?|interest rates?|rate (cut|hike|rise|increase)s?|"
            "cuts? (interest )?rates|raises? (interest )?rates|hikes? (interest )?rates|holds? (interest )?rates|keeps? (interest )?rates|negative rates|"
            "monetary policy|monetary easing|quantitative easing|yields?|bonds?|gilts?|treasury yields?|"
            "debt auction|policymakers|swap lines|rate-setters?"
        ),
        seeds=("the central bank raises interest rates", "Fed cuts rates", "bond yields rise"),
    ),
    "macro:economy": Topic(
        "the state of an economy: growth, recession, GDP, inflation, business surveys, economic data",
        names="GDP|CPI|PMI|IMF|OECD",
        words=(
            "econom(y|ies)|economic|economists?|recessions?|(?<!profit )(?<!revenue )(?<!sales )(?<!job )growth|"
            "inflation|deflation|consumer prices|slowdown|downturn|stagnation|productivity|"
            "factory (orders|output|activity|growth)|manufacturing|industrial (output|production)|retail sales|"
            "consumer (confidence|spending|sentiment)|business (confidence|investment|activity)|capital goods|"
            "recovery|output"
        ),
        seeds=("the economy slows as GDP growth weakens", "inflation rises", "recession fears grow"),
    ),
    "macro:jobs": Topic(
        "employment and labour: jobs, unemployment, wages and pay, layoffs, strikes and unions",
        names="UAW|TUC|Unite",
        words=(
            "jobs?|jobless|unemployment|employment|payrolls?|labou?r (market|costs?|shortages?)|wages?|"
            "pay (rise|rises|cut|cuts|gap)|minimum wage|layoffs?|lay off|laid off|workers?|workforce|staff|"
            r"employees?|hiring|unions?|furlough\w*|go (on )?strike|goes (on )?strike|going (on )?strike|votes? (on )?strike|voted (on )?strike|on (on )?strike|"
            "strikes? (over|at|by)|walkouts?|redundanc(y|ies)|gig economy|zero-hours"
        ),
        seeds=("unemployment rises as companies cut jobs", "workers strike over pay", "wage growth"),
    ),
    "macro:trade": Topic(
        "trade and tariffs: trade wars, talks and deals, exports and imports, export bans",
        names="NAFTA|USMCA|WTO|World Trade Organization|Lighthizer|Malmstrom|Phase 1|Phase One",
        words=(
            "tariffs?|trade(?! unions?| body| bodies| group| secrets?| shows?| fairs?| union)|exports?|imports?|"
            "exporters?|importers?|customs|anti-dumping|protectionis[mt]|"
            "export (ban|bans|controls|curbs|blacklist)|supplier ban|blacklist|duties|quotas?"
        ),
        seeds=("US and China trade war over tariffs", "trade talks", "exports fall"),
    ),
    "macro:brexit": Topic(
        "the UK's exit from the European Union and its effects",
        names="Brexit|Barnier|Brexiters?|Brexiteers?|Remainers?",
        words=(
            "no-deal|backstop|single market|customs union|withdrawal agreement|article 50|leave the EU|leaving the EU"
        ),
        seeds=("Brexit talks between the UK and the EU", "no-deal Brexit"),
    ),
    "macro:pandemic": Topic(
        "the Covid-19 pandemic, its lockdowns and their effects",
        names="SARS",
        words=(
            "coronavirus|covid(-19)?|virus|pandemic|lockdowns?|outbreak|epidemic|quarantines?|social distancing|"
            r"face masks?|stay-at-home|work from home|furlough\w*|reopening"
        ),
        seeds=("coronavirus pandemic lockdown", "Covid-19 outbreak spreads"),
    ),
    "macro:fiscal": Topic(
        "public finances: taxes, budgets, government spending, stimulus, bailouts and state aid, public debt",
        names="Hammond|Sunak|HMRC|IRS",
        words=(
            "tax(es|ation)?|taxpayers?|budgets?|austerity|budget deficits?|fiscal|stimulus|bailouts?|state aid|"
            "public (spending|finances|debt|sector|funds?)|"
            "government (spending|shutdown|debt|aid|funds?|loans?|support)|shutdown|"
            "financial aid|government aid|federal aid|coronavirus aid|emergency aid|economic aid|relief (package|bill)|"
            "rescue (package|deal)|spending review|sovereign debt|welfare|universal credit"
        ),
        seeds=("the government announces tax cuts and spending in the budget", "state bailout", "stimulus package"),
    ),
    "macro:currencies": Topic(
        "currencies and exchange rates",
        names="FX",
        words=(
            "currenc(y|ies)|exchange rates?|(?<!-)dollar(?!-| tree| general)|euro(?![s-]|zone| zone| area|pe)|sterling|pound|"
            "yen|yuan|renminbi|rupee|peso|lira|r[ou]ble|forex|devaluation|swap lines"
        ),
        seeds=("the dollar rises against the euro", "currency markets", "sterling falls"),
    ),
    "macro:climate": Topic(
        "climate change, emissions and environmental policy",
        names="ESG|EPA|Extinction Rebellion",
        words=(
            "climate|emissions?|carbon|net[- ]zero|environment(al)?|pollution|deforestation|fossil fuels?|"
            "global warming|greenhouse|green (energy|bonds?|finance|deal|investment|economy|recovery)|"
            r"sustainab\w+|plastics?|renewables?"
        ),
        seeds=("climate change and carbon emissions", "environmental campaigners"),
    ),
    "macro:markets": Topic(
        "financial markets: stocks, indices, share moves, IPOs and listings, investors and funds, gold",
        names="S&P(?! (Global|downgrades?|cuts|ratings?))|Dow|Nasdaq|NYSE|FTSE|Nikkei|Hang Seng|DAX|Stoxx|IPOs?|Cramer|Mad Money|SPACs?|Wall St",
        words=(
            "stocks?(?= market)|(?<!crude )(?<!oil )stocks?|shares|equit(y|ies)|wall street(?! journal)|stock market|"
            "(?<!single )(?<!labor )(?<!labour )(?<!housing )(?<!property )(?<!job )(?<!retail )(?<!currency )markets?|indexes|"
            "indices|flotation|listings?|investors?|rally|sell-?off|bull market|bear market|short-sellers?|"
            "fund managers?|traders?|trading|lightning round|buybacks?|market value|bullish|bearish|volatility|"
            "gold"
        ),
        seeds=("stocks fall on Wall Street", "shares jump after the results", "the IPO of the company"),
    ),
}

# ---- sectors (a company's sector comes with it, named here or in COMPANIES) ------------------
SECTORS = {
    "sector:energy": Topic(
        "energy: oil, gas, OPEC, coal, power and utilities, renewables, energy companies",
        names=(
            "OPEC|LNG|Aramco|Exxon|ExxonMobil|Chevron|BP|Shell|ConocoPhillips|Petrobras|Petronas|Gazprom|Rosneft|"
            "Centrica|SSE|EDF|Iberdrola|Enel|PG&E|Sempra|Chesapeake|Halliburton|Schlumberger|Eni|Equinor|Repsol|"
            "Total(?= SA)|Ofgem"
        ),
        words=(
            "oil|crude|gas|petrol|fuel|biofuels?|refiner(y|ies|s)|pipelines?|shale|coal|"
            "power (plants?|stations?|grid|prices|cuts)|electricity|utilit(y|ies)|energy|renewables?|solar|"
            "wind (farms?|power|turbines?)|nuclear|drilling|oilfields?|oil fields?|barrels?|fracking|oil and gas"
        ),
        seeds=("oil prices rise as OPEC cuts output", "energy company", "gas and electricity supplier"),
    ),
    "sector:financials": Topic(
        "financial services: banks, insurers, asset managers, payments, exchanges and crypto",
        names=(
            "Goldman|JPMorgan|JP Morgan|Morgan Stanley|Citi|Citigroup|Wells Fargo|Bank of America|BofA|HSBC|"
            "Barclays|Lloyds|RBS|NatWest|Santander|Deutsche Bank|Commerzbank|UBS|Credit Suisse|BNP Paribas|"
            "Societe Generale|Danske|ING|Standard Chartered|TSB|Metro Bank|Visa|Mastercard|PayPal|Wirecard|"
            "Berkshire|BlackRock|Allianz|AIG|Prudential|Aviva|Westpac|Monte dei Paschi|LSE|London Stock Exchange|"
            "Woodford|Wonga|Funding Circle|AMP|FCA|Bitcoin|Libra|Refinitiv|Nationwide|Schwab|Fidelity|Vanguard"
        ),
        words=(
            "(?<!central )(?<!world )(?<!reserve )(?<!development )(?<!food )banks?(?! of (england|japan|canada|korea|france|italy|spain|russia|china|israel|mexico)| holiday)|"
            "banking|bankers?|lenders?|insurers?|insurance|asset managers?|fund managers?|hedge funds?|"
            r"private equity|payments?|fintech|crypto\w*|bitcoin|blockchain|money[- ]laundering|credit cards?|"
            "brokers?|stock exchanges?|wealth managers?|pension funds?|peer-to-peer|payday|"
            "financial (services|sector|firms?)|savers|deposits"
        ),
        seeds=("banks and lenders", "an insurer and an asset manager", "bitcoin and cryptocurrency"),
    ),
    "sector:tech": Topic(
        "technology: tech companies, internet, software, chips, smartphones, telecoms and social media",
        names=(
            "Microsoft|Samsung|Intel|Qualcomm|Nokia|Ericsson|ZTE|Twitter|Snap|Snapchat|Alibaba|Tencent|Baidu|IBM|"
            "Oracle|SAP|Cisco|Nvidia|AMD|Broadcom|Texas Instruments|T-Mobile|Sprint|AT&T|Verizon|Vodafone|BT|"
            "Telefonica|Deutsche Telekom|France T[ée]l[ée]com|Xiaomi|Lyft|Pinterest|Zoom|Dell|HP|Toshiba|"
            "SoftBank|eBay|Yahoo|LinkedIn|TikTok|ByteDance|Foxconn|Micron|ASML|TSMC|Infineon|Salesforce|"
            "Silicon Valley|AI|IT|5G|Ofcom"
        ),
        words=(
            "tech|technology|technologies|software|chips?|chipmakers?|semiconductors?|smartphones?|phones?|"
            r"internet|online|cyber[- ]?(attacks?|security|crime|criminals|threats?)|hack(ers?|ing|ed)?|"
            "data (breach(es)?|privacy|protection|cent(re|er)s?|leaks?)|personal data|users'? data|apps?|"
            "social media|artificial intelligence|robots?|telecoms?|telecommunications|broadband|wireless|"
            "mobile (networks?|operators?|phones?)|cloud|e-commerce|computers?|encrypt(ed|ion)|fake news|"
            "self-driving|start-?ups?|digital"
        ),
        seeds=("a technology company's software and chips", "smartphone maker", "internet and social media"),
    ),
    "sector:media": Topic(
        "media and entertainment: TV, film, streaming, publishing, advertising, video games",
        names=(
            "Netflix|Disney|Fox|Comcast|Sky|Viacom|ViacomCBS|CBS|Warner|HBO|ITV|BBC|WPP|Spotify|Take-Two|"
            "Activision|Electronic Arts|Nintendo|New York Times|Murdoch|News Corp|Omnicom|Publicis|ABC|NBC|"
            "NBCUniversal|CNN|Hollywood|Super Bowl|Oscars?"
        ),
        words=(
            "(?<!state )media|newspapers?|publishers?|publishing|broadcast(ers?|ing)?|tv|television|films?|movies?|"
            "box office|streaming|advertising|advertisers?|ad revenue|video games?|gaming|music|studios?|pay-tv|"
            "magazines?|journalis(m|ts?)|entertainment"
        ),
        seeds=("a media company's TV and film streaming", "advertising and publishing", "a video game"),
    ),
    "sector:autos": Topic(
        "cars and carmakers: car sales, electric and self-driving vehicles, car parts",
        names=(
            "Ford|Toyota|Honda|Fiat|Chrysler|FCA|Renault|Daimler|Mercedes|BMW|Jaguar|Land Rover|JLR|Volvo Cars|"
            "Hyundai|Kia|PSA|Peugeot|Aston Martin|Bentley|Ferrari|Geely|Mazda|Subaru|Suzuki|Mitsubishi Motors|"
            "Continental|Takata|WLTP"
        ),
        words=(
            "cars?|carmakers?|carmaking|automakers?|auto(s|motive)?|vehicles?|evs?|electric vehicles?|trucks?|"
            "suvs?|motors?|dealerships?|diesel|self-driving|autonomous|robotaxis?|air ?bags?|car parts"
        ),
        seeds=("a carmaker's car sales", "electric vehicles", "the auto industry"),
    ),
    "sector:travel": Topic(
        "aviation and travel: airlines, aircraft makers, airports, tourism, hotels and cruises",
        names=(
            "Heathrow|Gatwick|Ryanair|easyJet|EasyJet|British Airways|IAG|Lufthansa|Air France|KLM|"
            "American Airlines|United Airlines|Delta|Southwest|Qantas|Emirates|Qatar Airways|Etihad|Alitalia|"
            "Norwegian Air|Flybe|Virgin Atlantic|Thomas Cook|TUI|Marriott|Hilton|Carnival|Airbnb|Expedia|"
            "Bombardier|Embraer|Rolls-Royce|FAA|EASA|Ctrip|Trip.com|Jet Airways|Cathay|AirAsia|Resorts World"
        ),
        words=(
            "airlines?|airports?|flights?|aviation|jets?|jetliners?|planes?|aircraft|aerospace|passengers?|"
            "pilots?|travel|tourism|tourists?|holidays?|hotels?|cruises?|cruise lines?|runways?|airspace|"
            "hospitality|air travel|carriers?"
        ),
        seeds=("airlines and air travel", "aircraft maker", "tourism and hotels"),
    ),
    "sector:retail": Topic(
        "retail: shops, supermarkets, e-commerce, restaurants, fashion and luxury, shoppers' spending",
        names=(
            "Walmart|Tesco|Sainsbury|Asda|Morrisons|Aldi|Lidl|Waitrose|John Lewis|Marks & Spencer|M&S|Debenhams|"
            "House of Fraser|Sports Direct|Mike Ashley|Primark|Boots|Arcadia|Topshop|Kroger|Costco|Home Depot|"
            r"Lowe's|Macy's|Penney|J ?\. ?Crew|Starbucks|McDonald's|Chipotle|Dunkin|Nike|Adidas|H&M|Zara|Inditex|"
            "Gucci|Kering|LVMH|Burberry|Ted Baker|Superdry|Poundland|Poundworld|Ocado|Dollar Tree|Dollar General|"
            "Best Buy|Gap|Kohl's|Deliveroo|Just Eat|Luckin|Greggs|Wetherspoon|Pizza Express|Restaurant Group|"
            "Walgreens|eBay|Black Friday|Cyber Monday"
        ),
        words=(
            "retail(ers?|ing)?(?! (investors?|shareholders?|banks?|banking))|shops?|shopping|shoppers?|stores?|high street|supermarkets?|grocers?|"
            "grocer(y|ies)|e-commerce|restaurants?|fashion|clothing|luxury (goods|brands?|fashion|groups?|retailers?|sector)|same-store sales|fast food|"
            "coffee chain|online shopping|consumer goods"
        ),
        seeds=("retailers and shoppers on the high street", "supermarket chain", "a restaurant chain"),
    ),
    "sector:health": Topic(
        "pharma and health: drugmakers, biotech, vaccines, health care and health insurers",
        names=(
            "NHS|FDA|Pfizer|Merck|Johnson & Johnson|J&J|Novartis|Roche|AstraZeneca|GlaxoSmithKline|GSK|Sanofi|"
            "Bayer|Takeda|Shire|AbbVie|Abbott|Amgen|Lilly|Gilead|Biogen|Moderna|Mylan|Teva|Allergan|"
            "Bristol-Myers|CVS|Express Scripts|Cigna|UnitedHealth|Anthem|Aetna|Humana|PerkinElmer|Novo Nordisk|"
            "Purdue|Medicare|Medicaid|Obamacare|WeDoctor"
        ),
        words=(
            r"drugs?|drugmakers?|pharma\w*|medicines?|medical|vaccines?|biotech\w*|health ?care|health insurers?|"
            "hospitals?|patients?|doctors?|clinical trials?|treatments?|cancer|opioids?|cannabis|diagnostics?|"
            "insulin|talc|health (system|service|insurance)"
        ),
        seeds=("a drugmaker's new medicine", "pharmaceutical and biotech companies", "health care and hospitals"),
    ),
    "sector:housing": Topic(
        "housing and property: house prices, mortgages, landlords and tenants, property companies, housebuilders",
        names=(
            "Persimmon|Barratt|Taylor Wimpey|Foxtons|Rightmove|Zoopla|Evergrande|British Land|Land Securities|"
            "Hammerson|Intu|WeWork|REITs?|Grenfell"
        ),
        words=(
            "hous(e|ing) prices?|housing|new homes|home (sales|prices|builders?|loans?|buyers?|ownership)|"
            "homebuilders?|housebuilders?|homebuyers?|mortgages?|property|properties|real estate|rents?|renters?|"
            r"landlords?|tenants?|leaseholders?|estate agents?|homeless\w*|cladding|shopping centres?"
        ),
        seeds=("house prices and mortgages", "landlords and tenants", "property developer"),
    ),
}

# ---- corporate events ------------------------------------------------------------------------
CORPORATE = {
    "corporate:deals": Topic(
        "deals: mergers, acquisitions, takeovers, stakes, bids, joint ventures and sales of assets",
        names="M&A|JV",
        words=(
            "mergers?|merge|acquisitions?|acquires?|acquired|acquiring|takeovers?|buyouts?|"
            r"(?<!in )(?<!in a )bids?(?! to\b)|stakes?|buys|"
            "agrees? to (buy|sell|acquire|merge)|agreed to (buy|sell|acquire|merge)|plans? to (buy|sell|acquire|merge)|"
            "talks to (buy|sell|acquire|merge)|deal to (buy|sell|acquire|merge)|offer to (buy|sell|acquire|merge)|"
            "move to (buy|sell|acquire|merge)|bid to (buy|sell|acquire|merge)|nears to (buy|sell|acquire|merge)|"
            "seeks to (buy|sell|acquire|merge)|"
            r"sells?(?= (its|a|stake|unit))|sale of|divest\w*|spin(-| )?offs?|joint ventures?|alliance|tie-ups?|"
            "hostile|offer for|consolidation|purchase|buyers? of|rescue talks"
        ),
        seeds=("company agrees to buy a rival in a merger deal", "takeover bid", "sells a stake"),
    ),
    "corporate:earnings": Topic(
        "company results: profits, revenue and sales, forecasts and guidance, losses and charges",
        words=(
            "profits?|earnings|revenues?|results|quarterly|(?<!job )(?<!jobs )(?<!job )loss(es)?|"
            "(?<!retail )sales|forecasts?|outlook|guidance|dividends?|margins?|deliveries|turnover|"
            "beats? (expectations|estimates|forecasts)|writedowns?|write-downs?|impairments?|profit warning|"
            "estimates"
        ),
        seeds=("the company reports quarterly profit above forecasts", "revenue falls", "cuts its outlook"),
    ),
    "corporate:legal": Topic(
        "regulation and the law: regulators, probes, lawsuits, courts, fines, settlements, misconduct",
        names=(
            "SEC|FCA|CMA|FTC|DoJ|DOJ|Justice Department|Department of Justice|FAA|EASA|Ofcom|Ofgem|SFO|"
            "Serious Fraud Office|Vestager|PPI"
        ),
        words=(
            "regulators?|regulatory|regulations?|watchdogs?|antitrust|"
            r"competition (law|authority|watchdog|regulator|rules)|cartel office|probes?|probing|investigat\w+|"
            "lawsuits?|sue(s|d)?|suing|courts?|judges?|trials?(?! run)|verdicts?|fines?|fined|penalt(y|ies)|"
            r"settles?|settled|settlements?|charged|prosecut\w+|police|fraud|money[- ]laundering|brib(ery|es?)|"
            "class[- ]action|allegations?|alleged(ly)?|alleges?|misconduct|harassment|ban(s|ned)?|rules?|laws?|"
            r"legal|illegal(ly)?|scandal|arrest\w*|extradition|indict\w*|appeal|ground(s|ed|ing)?|crackdown|"
            "sanctions|compliance|mis-selling|tax evasion|cheating"
        ),
        seeds=("regulators fine the company after a probe", "lawsuit in court", "antitrust investigation"),
    ),
    "corporate:leadership": Topic(
        "executives and boards: appointments, departures, pay and bonuses, a chief's conduct or death",
        names="Glass Lewis|president",
        words=(
            "steps? down|stepped down|stepping down|resign(s|ed|ation)?|quits?|ousts?|ouster|oust|appoints?|"
            "appointed|names new|new (ceo|chief executive|chairman|chair|boss|president|cfo)|successor|"
            "replacement|pay (package|deal|award|proposals)|bonus(es)?|executive pay|obituary|dies|"
            "executive departures?|leaves (post|role)|takes? the (reins|wheel)|promotes|promoted|"
            "board (shake-?up|members?)|directors|shareholder revolts?|investor revolts?|to lead|leadership|"
            "chairman|founder"
        ),
        seeds=("the chief executive steps down", "the company appoints a new CEO", "executive pay package"),
    ),
}

# ---- companies: named at least 0.4 times a day in the stream -----------------------------
COMPANIES = {
    "company:boeing": Topic(
        "Boeing, the aircraft maker (737 MAX, Dreamliner)",
        names="Boeing|737 ?(MAX|Max)|Dreamliner|Muilenburg",
        implies=("sector:travel",),
    ),
    "company:tesla": Topic(
        "Tesla, the electric carmaker, and its chief Elon Musk",
        names="Tesla|Musk|Cybertruck|Model 3|Model Y|Gigafactory|TSLA",
        implies=("sector:autos",),
    ),
    "company:amazon": Topic(
        "Amazon, the online retailer and cloud company (AWS, Whole Foods)",
        names=r"Amazon(?! rainforest| forest| fires?\b| basin| river)|Bezos|Whole Foods|AWS|AMZN",
        implies=(
            "sector:retail",
            "sector:tech",
        ),
    ),
    "company:huawei": Topic(
        "Huawei, the Chinese telecoms equipment and phone maker",
        names="Huawei|Meng Wanzhou|Ren Zhengfei",
        implies=("sector:tech",),
    ),
    "company:apple": Topic(
        "Apple, the iPhone maker",
        names="Apple(?! Daily)|iPhones?|iPads?|App Store|Tim Cook|AAPL",
        implies=("sector:tech",),
    ),
    "company:nissan": Topic(
        "Nissan, the carmaker, and its ousted chairman Carlos Ghosn",
        names="Nissan|Ghosn",
        implies=("sector:autos",),
    ),
    "company:facebook": Topic(
        "Facebook, the social network (Instagram, WhatsApp, Libra)",
        names="Facebook|Zuckerberg|Instagram|WhatsApp|Libra|FB",
        implies=("sector:tech",),
    ),
    "company:google": Topic(
        "Google and its parent Alphabet (YouTube, Android, Waymo)",
        names="Google|Alphabet|YouTube|Android|Waymo|Pichai|DeepMind|GOOGL?",
        implies=("sector:tech",),
    ),
    "company:volkswagen": Topic(
        "Volkswagen, the carmaker, and its brands Audi and Porsche",
        names="Volkswagen|VW|Audi|Porsche|Diess",
        implies=("sector:autos",),
    ),
    "company:airbus": Topic(
        "Airbus, the aircraft maker",
        names="Airbus|A3[2-8]0(neo)?|A220",
        implies=("sector:travel",),
    ),
    "company:uber": Topic(
        "Uber, the ride-hailing company",
        names="Uber|Khosrowshahi|Kalanick",
        implies=("sector:tech",),
    ),
    "company:gm": Topic(
        "General Motors, the carmaker",
        names="GM(?! (crops?|food|foods|wheat|mosquito(es)?|salmon|trees))|General Motors|Mary Barra",
        implies=("sector:autos",),
    ),
}

TAXONOMY: dict[str, Topic] = {**MACRO, **SECTORS, **CORPORATE, **COMPANIES}

#: the zero-shot threshold on cosine similarity, the best on the dev half (benchmarks/topics.py)
EMBEDDING_THRESHOLD = 0.35


def compile_pattern(topic: Topic) -> re.Pattern | None:
    """One regex for the topic: its names with their case, its words in any case, each
    alternative between word boundaries (no letter, digit or underscore on either side)."""
    alternatives = [topic.names] if topic.names else []
    alternatives += [f"(?i:{topic.words})"] if topic.words else []
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


WORD = re.compile(r"\w+")
KEY_LENGTH = 6  # how much of a word's start the cheap test compares


def word_starts(text: str) -> set[str]:
    """The first 1 to ``KEY_LENGTH`` characters of every word of ``text``, casefolded."""
    return {word[:n] for word in WORD.findall(text.casefold()) for n in range(1, KEY_LENGTH + 1)}


@dataclass(frozen=True)
class Matcher:
    """A topic's regex behind a cheap test. A match starts a word with its alternative's
    literal prefix, so the first letters of that prefix (``keys``, casefolded) begin a
    word of the casefolded text; a text where none does cannot match and the regex is not
    run. Several times faster, the same result (benchmarks/topics.py checks it on the
    whole stream)."""

    pattern: re.Pattern
    keys: frozenset[str] | None  # None: some alternative has no literal start, always run

    @classmethod
    def of(cls, topic: Topic) -> Matcher | None:
        pattern = compile_pattern(topic)
        if pattern is None:
            return None
        alternatives = split_alternatives(topic.names) + split_alternatives(topic.words)
        keys = [_lead(literal_prefix(alternative).casefold()) for alternative in alternatives]
        return cls(pattern, None if "" in keys else frozenset(keys))

    def search(self, text: str, starts: set[str]) -> bool:
        if self.keys is not None and self.keys.isdisjoint(starts):
            return False
        return self.pattern.search(text) is not None


def _lead(prefix: str) -> str:
    """The word characters that open ``prefix``, at most ``KEY_LENGTH``."""
    return WORD.match(prefix).group(0)[:KEY_LENGTH] if WORD.match(prefix) else ""


def split_alternatives(regex: str) -> list[str]:
    """The top-level alternatives of ``regex`` (its ``|`` outside any group or class)."""
    parts, depth, start, in_class, i = [], 0, 0, False, 0
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            i += 1  # an escaped character is literal
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            parts.append(regex[start:i])
            start = i + 1
        i += 1
    return [*parts, regex[start:]] if regex else []


def literal_prefix(alternative: str) -> str:
    """The literal text every match of ``alternative`` starts with ("" when it starts
    with a group, a class or an escape): leading lookbehinds skipped, a character that a
    ``?``, ``*`` or ``{`` makes optional dropped."""
    while alternative.startswith(("(?<!", "(?<=")):
        alternative = alternative[_group_end(alternative) :]
    prefix = ""
    for char in alternative:
        if char in "?*{":
            return prefix[:-1]
        if char in "()[]\\.|^$+":
            return prefix
        prefix += char
    return prefix


def _group_end(regex: str) -> int:
    """The index just after the group that opens ``regex``."""
    depth = 0
    for i, char in enumerate(regex):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i + 1
    raise ValueError(f"unbalanced group in {regex!r}")


class TopicTagger:
    """Tags texts with the topics of ``TAXONOMY``.

    ``method``: ``rules`` (names and words), ``embeddings`` (cosine to each topic's seed
    prototype, at least ``threshold``) or ``union``. The embedding methods need the
    texts' vectors from ``encoder`` (the MiniLM the monitor already runs): pass them to
    ``tag``, or let the tagger encode the texts itself; the prototypes are encoded once,
    here."""

    def __init__(self, method: str = "rules", encoder: Encoder | None = None, threshold: float | None = None):
        if method not in METHODS:
            raise InvalidArgument(f"method: {method!r} unknown; allowed: {', '.join(METHODS)}")
        if method != "rules" and encoder is None:
            raise InvalidArgument(f"encoder: method {method!r} needs an encoder for the topics' prototypes")
        self.method = method
        self.encoder = encoder
        self.threshold = EMBEDDING_THRESHOLD if threshold is None else threshold
        self.topics: dict[str, str] = {name: topic.description for name, topic in TAXONOMY.items()}
        self.matchers = {name: Matcher.of(topic) for name, topic in TAXONOMY.items()}
        self.implied = {name: topic.implies for name, topic in TAXONOMY.items()}
        self.prototypes = self._prototypes() if method != "rules" else None

    def _prototypes(self) -> torch.Tensor:
        """(topics, dim): each topic's description and seed phrases, embedded and averaged."""
        rows = []
        for topic in TAXONOMY.values():
            vectors = self.encoder.encode([topic.description, *topic.seeds]).float()
            rows.append(torch.nn.functional.normalize(vectors.mean(0), dim=0))
        return torch.stack(rows)

    def tag(self, texts: list[str], vectors: torch.Tensor | None = None) -> list[tuple[str, ...]]:
        """Each text's topics, in ``topics`` order (none: an empty tuple)."""
        found = [set() for _ in texts]
        if self.method in ("rules", "union"):
            for topics, text in zip(found, texts):
                topics.update(self.match(text))
        if self.method in ("embeddings", "union"):
            for topics, similar in zip(found, self.similar(texts, vectors)):
                topics.update(similar)
        order = list(self.topics)
        return [tuple(sorted(self._with_implied(topics), key=order.index)) for topics in found]

    def match(self, text: str) -> set[str]:
        """The topics whose names or words occur in ``text``."""
        starts = word_starts(text)
        return {name for name, matcher in self.matchers.items() if matcher and matcher.search(text, starts)}

    def scores(self, texts: list[str], vectors: torch.Tensor | None = None) -> torch.Tensor:
        """(texts, topics) cosine similarities between the texts' vectors and the prototypes."""
        if self.prototypes is None:
            raise InvalidArgument("method: scores need the embeddings; this tagger uses 'rules'")
        if vectors is None:
            vectors = self.encoder.encode(texts)
        if vectors.shape != (len(texts), self.prototypes.shape[1]):
            raise InvalidArgument(
                f"vectors: shape {tuple(vectors.shape)}; expected ({len(texts)}, {self.prototypes.shape[1]}), "
                "one row per text from the tagger's encoder"
            )
        return torch.nn.functional.normalize(vectors.float(), dim=1) @ self.prototypes.T

    def similar(self, texts: list[str], vectors: torch.Tensor | None) -> list[set[str]]:
        names = list(self.topics)
        above = self.scores(texts, vectors) >= self.threshold
        return [{names[j] for j in row.nonzero().flatten().tolist()} for row in above]

    def _with_implied(self, topics: set[str]) -> set[str]:
        return topics | {implied for name in topics for implied in self.implied[name]}
