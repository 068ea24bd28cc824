// graphql-codegen's client preset over trusted/documents.graphql: it writes the typed
// documents and, with persistedDocuments, the manifest taskql's TRUSTED_DOCUMENTS reads.
// Apollo Client and urql add __typename to every selection; the transform writes it into
// the manifest's documents so that what runs is what their caches expect.
import { addTypenameSelectionDocumentTransform } from '@graphql-codegen/client-preset';

export default {
  schema: '../../schema.graphql',
  documents: ['trusted/documents.graphql'],
  generates: {
    'trusted/gql/': {
      preset: 'client',
      presetConfig: {
        persistedDocuments: { hashAlgorithm: 'sha256' },
        fragmentMasking: false,
      },
      documentTransforms: [addTypenameSelectionDocumentTransform],
    },
  },
};
