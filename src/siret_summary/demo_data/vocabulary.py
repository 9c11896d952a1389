"""The legacy data's vocabulary: places, company names, federations, colleges, the garbage found in the wild."""

from __future__ import annotations

from datetime import date

import polars as pl
import pyarrow as pa

PV_TABLE = "Tous_PV"
INVITATIONS_TABLE = "invitations"
_SOURCE_TABLES = (PV_TABLE, INVITATIONS_TABLE)
_MESSY_COUNT_COLUMNS = ("num_inscrits", "num_votants", "num_sve")
_UNIONS = ("CGT", "CFDT", "FO", "CFTC", "CGC", "UNSA", "SOLIDAIRE", "AUTRE")
_UNION_PRESENCE = (0.62, 0.58, 0.42, 0.22, 0.36, 0.24, 0.16, 0.22)
# Cycle number -> window (first, last day); C5 stands for elections already held
# in 2025-2026, which the default configuration ignores.
_CYCLE_WINDOWS = {3: (date(2017, 1, 1), date(2020, 12, 31)),
                  4: (date(2021, 1, 1), date(2024, 12, 31)),
                  5: (date(2025, 1, 1), date(2026, 12, 31))}
_CYCLE_PATTERNS = ([3], [4], [3, 4], [4, 5], [3, 4, 5], [5])
_CYCLE_PATTERN_WEIGHTS = (0.25, 0.26, 0.38, 0.03, 0.05, 0.03)
_EPOCH = date(1970, 1, 1)
_NULL_TEXT = pl.lit(None, dtype=pl.String)
_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}
_ARROW_TYPES = {"INTEGER": pa.int64(), "FLOAT": pa.float64(), "VARCHAR": pa.string(),
                "TEXT": pa.string(), "JSON": pa.string(), "DATE": pa.date32(),
                "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us")}


# -------------------------------------------------------------------- vocabulary

# (postal code, town, region, weight); 0xxxx codes lose their zero in spreadsheets.
_PLACES = (
    ("75008", "Paris", "Île-de-France", 9), ("75015", "Paris", "Île-de-France", 6),
    ("92100", "Boulogne-Billancourt", "Île-de-France", 3), ("93200", "Saint-Denis", "Île-de-France", 3),
    ("94000", "Créteil", "Île-de-France", 2), ("95000", "Cergy", "Île-de-France", 2),
    ("78000", "Versailles", "Île-de-France", 2), ("91000", "Évry", "Île-de-France", 2),
    ("77000", "Melun", "Île-de-France", 1), ("69003", "Lyon", "Auvergne-Rhône-Alpes", 5),
    ("38000", "Grenoble", "Auvergne-Rhône-Alpes", 2),
    ("63000", "Clermont-Ferrand", "Auvergne-Rhône-Alpes", 2),
    ("01000", "Bourg-en-Bresse", "Auvergne-Rhône-Alpes", 1),
    ("03100", "Montluçon", "Auvergne-Rhône-Alpes", 1), ("07000", "Privas", "Auvergne-Rhône-Alpes", 1),
    ("13001", "Marseille", "Provence-Alpes-Côte d'Azur", 5),
    ("06000", "Nice", "Provence-Alpes-Côte d'Azur", 3),
    ("83000", "Toulon", "Provence-Alpes-Côte d'Azur", 2),
    ("84000", "Avignon", "Provence-Alpes-Côte d'Azur", 1),
    ("04000", "Digne-les-Bains", "Provence-Alpes-Côte d'Azur", 1),
    ("05000", "Gap", "Provence-Alpes-Côte d'Azur", 1), ("59000", "Lille", "Hauts-de-France", 4),
    ("80000", "Amiens", "Hauts-de-France", 1), ("02100", "Saint-Quentin", "Hauts-de-France", 1),
    ("31000", "Toulouse", "Occitanie", 4), ("34000", "Montpellier", "Occitanie", 2),
    ("66000", "Perpignan", "Occitanie", 1), ("09000", "Foix", "Occitanie", 1),
    ("33000", "Bordeaux", "Nouvelle-Aquitaine", 3), ("87000", "Limoges", "Nouvelle-Aquitaine", 1),
    ("64000", "Pau", "Nouvelle-Aquitaine", 1), ("44000", "Nantes", "Pays de la Loire", 3),
    ("35000", "Rennes", "Bretagne", 2), ("29200", "Brest", "Bretagne", 1),
    ("67000", "Strasbourg", "Grand Est", 2), ("51100", "Reims", "Grand Est", 1),
    ("08000", "Charleville-Mézières", "Grand Est", 1), ("21000", "Dijon", "Bourgogne-Franche-Comté", 1),
    ("25000", "Besançon", "Bourgogne-Franche-Comté", 1), ("45000", "Orléans", "Centre-Val de Loire", 1),
    ("37000", "Tours", "Centre-Val de Loire", 1), ("76000", "Rouen", "Normandie", 2),
    ("14000", "Caen", "Normandie", 1), ("20000", "Ajaccio", "Corse", 1),
    ("20137", "Porto-Vecchio", "Corse", 0.3), ("20200", "Bastia", "Corse", 1),
    ("20250", "Corte", "Corse", 0.3), ("97400", "Saint-Denis", "La Réunion", 1),
    ("97200", "Fort-de-France", "Martinique", 0.7), ("97100", "Basse-Terre", "Guadeloupe", 0.7),
    ("97300", "Cayenne", "Guyane", 0.4), ("97600", "Mamoudzou", "Mayotte", 0.3),
)
_COMPANY_PREFIXES = ("SAS", "SARL", "SA", "Société", "Groupe", "Établissements", "Clinique", "Transports",
                     "Boulangerie", "Hôpital privé", "Association", "Mutuelle", "Laboratoires", "Garage")
_COMPANY_NAMES = ("Dupont", "Martin", "Bernard", "Durand", "Lefebvre", "Moreau", "Laurent", "Simon",
                  "Michel", "Garcia", "Roux", "Fournier", "Girard", "Bonnet", "Mercier", "Blanc",
                  "Guérin", "Muller", "Henry", "Rousseau", "Nicolas", "Perrin", "Morin", "Mathieu",
                  "Clément", "Gauthier", "Dumont", "Lopez", "Fontaine", "Chevalier", "Robin", "Masson")
_COMPANY_SUFFIXES = ("", "", "", "et Fils", "Industrie", "Services", "France", "Logistique",
                     "Distribution", "Santé", "Nord", "Sud")
_FEDERATIONS = ("FTM Métallurgie", "Commerce et Services", "Santé Action Sociale", "FAPT", "FNIC",
                "FERC", "Services publics", "Construction Bois", "Banques Assurances", "Transports",
                "Énergie", "Agroalimentaire", "Sociétés d'études", "Cheminots", "Organismes sociaux")
_IDCCS = ("3248", "1486", "2216", "0016", "1979", "0573", "2264", "1090", "0044", "2120", "1517",
          "0086", "2098", "1996", "0843", "3043", "2511", "1518", "0675", "0292", "9999", None)
_COLLEGES = ("1er collège", "2ème collège", "3ème collège")
_NAF_CODES = ("62.01Z", "47.11F", "86.10Z", "49.41A", "25.62B", "56.10A", "70.22Z", "88.10A",
              "10.71C", "43.21A", "52.29B", "64.19Z")
_INVITATION_SOURCES = ("courrier", "email", "plateforme", "import_csv", "saisie")
_GARBAGE_SIRETS = ("NC", "", "inconnu", "-", "SIRET", "en cours", "?", "n/a")
_GARBAGE_DATES = ("NC", "inconnue", "2019", "mars 2019", "14/03/19", "00/00/0000", "??",
                  "2019-3", "voir PV", "-", "#VALEUR!")
_GARBAGE_CYCLES = ("C?", "N/A", "2017-2020", "Cycle", "X", "")
_TEXT_NULLS = ("", "nan", "NaN", "null", "None", "NC", "n/a", "?")
